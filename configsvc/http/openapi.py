"""The OpenAPI description of the native API, served at ``/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _op(summary: str, params: list[dict[str, Any]] | None = None, body: str | None = None,
        ok: str = "OK", errors: tuple[int, ...] = (400, 404, 503)) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": params or []}
    if body:
        op["requestBody"] = {"content": {body: {"schema": {}}}}
    op["responses"] = {"200": {"description": ok}} | {
        str(code): {"description": "error", "content": {"application/json": {"schema": _ERROR}}}
        for code in errors
    }
    return op


def _not_modified(op: dict[str, Any]) -> dict[str, Any]:
    op["responses"]["304"] = {"description": "not modified: If-None-Match holds the ETag"}
    return op


def _q(name: str, kind: str, text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind}, "description": text}


def _p(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_READ = [
    _q("consistency", "string", "linearizable (default) or stale"),
    _q("index", "integer", "block until the revision exceeds this (watch)"),
    _q("wait", "number", "seconds to block at most (watch)"),
]

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "configsvc native API", "version": "1"},
    "paths": {
        "/v1/namespaces": {
            "get": _op("List namespaces (linearizable; consistency=stale: this node's registry)",
                       [_q("consistency", "string", "linearizable (default) or stale")]),
            "post": _op("Create a namespace {name, consistency, merge}", body="application/json",
                        errors=(400, 409, 503, 504)),
        },
        "/v1/namespaces/{ns}": {
            "get": _op("Describe a namespace", [_p("ns")]),
            "delete": _op("Delete a namespace and its keys", [_p("ns")], errors=(404, 503, 504)),
        },
        "/v1/kv/{ns}": {"get": _op("List keys by prefix", [_p("ns"), _q("prefix", "string", ""),
                                                           _q("limit", "integer", ""), *_READ])},
        "/v1/kv/{ns}/{key}": {
            "get": _op("Read a key", [_p("ns"), _p("key"), *_READ]),
            "put": _op("Write a key (body: the value bytes)",
                       [_p("ns"), _p("key"), _q("cas", "integer", "expected mod_revision; 0 = create only"),
                        _q("flags", "integer", "")],
                       body="application/octet-stream", errors=(400, 404, 412, 413, 503, 504)),
            "delete": _op("Delete a key (recurse=true: a prefix)",
                          [_p("ns"), _p("key"), _q("cas", "integer", ""), _q("recurse", "boolean", "")],
                          errors=(400, 404, 412, 503, 504)),
        },
        "/v1/txn/{ns}": {"post": _op("All-or-nothing transaction: strong, under compares; eventual, ops in order at this node",
                                      [_p("ns")], body="application/json", errors=(400, 404, 409, 503, 504))},
        "/v1/config/{ns}/{prefix}": {"get": _not_modified(_op(
            "The keys under a prefix as one nested document (docs/config-documents.md)",
            [_p("ns"), _p("prefix"), _q("format", "string", "json (default) or yaml"), *_READ,
             {"name": "If-None-Match", "in": "header", "required": False,
              "schema": {"type": "string"}, "description": "an ETag: 304 if unchanged"}],
            ok="the document (application/json or application/yaml), with ETag and "
               "X-Configsvc-Index", errors=(400, 404, 409, 422, 503)))},
        "/v1/cluster/health": {"get": _op("Consensus-aware health of this node")},
    },
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        "required": ["code", "message"],
                    }
                },
            }
        }
    },
}

# ---------------------------------------------------------------- service discovery
_INSTANCE = [_p("ns"), _p("service"), _p("instance_id")]
_QUERY = [
    _q("passing", "boolean", "only instances whose status is passing"),
    _q("consistency", "string", "strong: default (leader lease), consistent (quorum round) or "
       "stale (this node); eventual namespaces always answer locally"),
    _q("index", "integer", "block until X-Configsvc-Index exceeds this"),
    _q("wait", "number", "seconds to block at most"),
]
OPENAPI["paths"].update({
    "/v1/services/{ns}": {
        "get": _op("Services of a namespace: tags, instances, passing (instances=true: every instance)",
                   [_p("ns"), _q("instances", "boolean", ""), *_QUERY]),
    },
    "/v1/services/{ns}/{service}": {
        "get": _op("Instances of a service (blocking with index and wait)", [_p("ns"), _p("service"), *_QUERY]),
    },
    "/v1/services/{ns}/{service}/{instance_id}": {
        "put": _op("Register an instance {address, port, tags, meta, ttl, deregister_after, status, "
                   "check: {http, interval, timeout}}", _INSTANCE, body="application/json",
                   errors=(400, 404, 409, 413, 503, 504)),
        "delete": _op("Deregister an instance", _INSTANCE, errors=(400, 404, 503, 504)),
    },
    "/v1/services/{ns}/{service}/{instance_id}/check": {
        "put": _op("Report a check result {status: passing|warning|critical, output}", _INSTANCE,
                   body="application/json", errors=(400, 404, 409, 503, 504)),
    },
    "/v1/services/{ns}/{service}/{instance_id}/heartbeat": {
        "put": _op("A TTL heartbeat {status (default passing), output}", _INSTANCE,
                   body="application/json", errors=(400, 404, 409, 503, 504)),
    },
})
