"""The OpenAPI description of the native API, served at ``/v1/openapi.json``.

It is the contract the fuzzer holds the server to (tests/test_fuzz_api.py,
``make fuzz``): every request it calls valid must not be a 5xx, every
request it calls invalid must be a 4xx, and every answer has a status and a
body it declares (errors: the ``Error`` object). So parameters say what the
server checks — enums, patterns, ranges — not merely their JSON type.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_UINT64 = {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}
#: namespace names (``configsvc.config.valid_name``)
_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"}
#: service names and instance ids (``configsvc.discovery_types.check_name``)
_SERVICE_NAME = {"type": "string", "pattern": r"^[^/\x00-\x1f\x7f]{1,256}$"}


def _op(summary: str, params: list[dict[str, Any]] | None = None, body: str | None = None,
        ok: str = "OK", errors: tuple[int, ...] = (400, 404, 503),
        body_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": params or []}
    if body:
        op["requestBody"] = {"content": {body: {"schema": body_schema or {}}},
                             "required": bool(body_schema and body_schema.get("required"))}
    op["responses"] = {"200": {"description": ok}} | {
        str(code): {"description": "error", "content": {"application/json": {"schema": _ERROR}}}
        for code in errors
    }
    return op


def _not_modified(op: dict[str, Any]) -> dict[str, Any]:
    op["responses"]["304"] = {"description": "not modified: If-None-Match holds the ETag"}
    return op


def _created(op: dict[str, Any]) -> dict[str, Any]:
    op["responses"]["201"] = {"description": "created"}
    return op


def _q(name: str, kind: str | dict[str, Any], text: str, *, empty: bool = False) -> dict[str, Any]:
    """A query parameter; ``empty``: the server reads ``?name=`` too (a number: as if
    absent; a discovery flag: as true)."""
    schema = {"type": kind} if isinstance(kind, str) else kind
    param = {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
    return param | {"allowEmptyValue": True} if empty else param


def _h(name: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": schema, "description": text}


def _p(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


_NS = _p("ns", _NAME)
_KEY = _p("key", {"type": "string", "minLength": 1})
_WAIT = {"type": "number", "minimum": 0}
#: strong namespaces: a revision; eventual namespaces: the ``index`` of the previous answer
_INDEX = {"oneOf": [_UINT64, {"type": "string", "pattern": "^[0-9a-f]{16}$"}]}
_READ = [
    _q("consistency", {"type": "string", "enum": ["linearizable", "stale"]},
       "linearizable (default) or stale"),
    _q("index", _INDEX, "block until the answer differs from the one with this index: "
       "strong namespaces, a revision (X-Configsvc-Index); eventual, the answer's 'index'",
       empty=True),
    _q("wait", _WAIT, "seconds to block at most (watch)"),
]
_TOKEN = _h("X-Configsvc-Token", {"type": "string"}, "eventual namespaces: the causal token of "
            "an earlier answer")
# X-Client-Id/X-Client-Seq (strong namespaces) and Idempotency-Key (eventual) are not
# listed: each kind of namespace ignores the other's, so no value is invalid on these paths.
_WRITE_HEADERS = [_TOKEN]
_OBJECTS = {"type": "array", "items": {"type": "object"}}
_TXN = {
    "description": "strong namespaces: {compare, success, failure}; eventual: {ops}",
    "anyOf": [
        {"type": "object", "additionalProperties": False,
         "properties": {"compare": _OBJECTS, "success": _OBJECTS, "failure": _OBJECTS}},
        {"type": "object", "additionalProperties": False, "properties": {"ops": _OBJECTS},
         "required": ["ops"]},
    ],
}
_NAMESPACE = {
    "type": "object",
    "properties": {
        "name": _NAME,
        "consistency": {"type": "string", "enum": ["strong", "eventual"]},
        "merge": {"type": "string", "enum": ["mvr", "lww"]},
    },
    "required": ["name"],
    "additionalProperties": False,
}
_SECONDS = {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 365 * 24 * 3600}
_STATUS = {"type": "string", "enum": ["passing", "warning", "critical"]}
_REGISTRATION = {
    "type": "object",
    "properties": {
        "address": {"type": "string", "maxLength": 256, "nullable": True},
        "port": {"type": "integer", "minimum": 0, "maximum": 65535},
        "tags": {"type": "array", "maxItems": 64, "nullable": True,
                 "items": {"type": "string", "minLength": 1, "maxLength": 256}},
        "meta": {"type": "object", "maxProperties": 64, "nullable": True,
                 "propertyNames": {"minLength": 1, "maxLength": 128},
                 "additionalProperties": {"type": "string", "maxLength": 512}},
        "ttl": _SECONDS | {"nullable": True},
        "deregister_after": _SECONDS | {"nullable": True},
        "status": _STATUS,
        "check": {
            "type": "object",
            "nullable": True,
            "properties": {
                "http": {"type": "string", "pattern": "^https?://", "maxLength": 2048},
                "interval": _SECONDS | {"minimum": 0.05, "exclusiveMinimum": False},
                "timeout": _SECONDS | {"nullable": True},
            },
            "required": ["http"],
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}
_CHECK = {
    "type": "object",
    "properties": {"status": _STATUS, "output": {"type": "string", "maxLength": 4096}},
    "additionalProperties": False,
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "configsvc native API", "version": "1"},
    "paths": {
        "/v1/namespaces": {
            "get": _op("List namespaces (linearizable; consistency=stale: this node's registry)",
                       [_q("consistency", {"type": "string", "enum": ["linearizable", "stale"]},
                           "linearizable (default) or stale")]),
            "post": _created(_op("Create a namespace {name, consistency, merge} (200: it "
                                 "already exists as asked)", body="application/json",
                                 errors=(400, 409, 413, 503, 504), body_schema=_NAMESPACE)),
        },
        "/v1/namespaces/{ns}": {
            "get": _op("Describe a namespace", [_NS]),
            "delete": _op("Delete a namespace and its keys", [_NS], errors=(400, 404, 503, 504)),
        },
        "/v1/kv/{ns}": {"get": _op("List keys by prefix", [_NS, _q("prefix", "string", ""),
                                                           _q("limit", _UINT64, "", empty=True), *_READ, _TOKEN],
                                   errors=(400, 404, 409, 503))},
        "/v1/kv/{ns}/{key}": {
            "get": _op("Read a key", [_NS, _KEY, *_READ, _TOKEN], errors=(400, 404, 409, 503)),
            "put": _op("Write a key (body: the value bytes)",
                       [_NS, _KEY, _q("cas", _UINT64, "expected mod_revision; 0 = create only", empty=True),
                        _q("flags", _UINT64, "", empty=True),
                        _q("blind", "boolean", "eventual: supersede nothing (keep every value)"),
                        *_WRITE_HEADERS],
                       body="application/octet-stream", errors=(400, 404, 409, 412, 413, 503, 504)),
            "delete": _op("Delete a key (recurse=true: a prefix)",
                          [_NS, _KEY, _q("cas", _UINT64, "", empty=True), _q("recurse", "boolean", ""),
                           *_WRITE_HEADERS],
                          errors=(400, 404, 409, 412, 503, 504)),
        },
        "/v1/txn/{ns}": {"post": _op("All-or-nothing transaction: strong, under compares; eventual, ops in order at this node",
                                      [_NS, _TOKEN], body="application/json",
                                      errors=(400, 404, 409, 413, 503, 504), body_schema=_TXN)},
        "/v1/config/{ns}/{prefix}": {"get": _not_modified(_op(
            "The keys under a prefix as one nested document (docs/config-documents.md)",
            [_NS, _p("prefix"), _q("format", {"type": "string", "enum": ["json", "yaml"]},
                                   "json (default) or yaml"), *_READ, _TOKEN,
             {"name": "If-None-Match", "in": "header", "required": False,
              "schema": {"type": "string"}, "description": "an ETag: 304 if unchanged"}],
            ok="the document (application/json or application/yaml), with ETag and "
               "X-Configsvc-Index", errors=(400, 404, 409, 422, 503)))},
        "/v1/cluster/health": {"get": _op(
            "Consensus-aware health of this node: status, every reason for it, per eventual "
            "namespace whether the replicas' digests agree",
            [_q("local", {"type": "string", "enum": ["true", "false"]},
                "true: this node's own report, without its peers' digests")],
            errors=(400,))},
        "/v1/cluster/status": {"get": _op(
            "The cluster at a glance from this node: every node, namespace and reason",
            errors=())},
        "/v1/cluster/upgrade": {"get": _op("State-machine versions: active, target, and "
                                           "each voter's supported range")},
        # membership (configsvc.http.members_api; docs/membership.md)
        "/v1/cluster/members": {
            "get": _op("The strong group's configuration as this node committed it"),
            "post": _op("Add a node as a learner (on the leader; admin token if configured)",
                        body="application/json", errors=(400, 401, 409, 503, 504),
                        body_schema={"type": "object", "required": ["id", "peer_address",
                                                                    "api_address"]}),
        },
        "/v1/cluster/members/{id}/promote": {"post": _op(
            "Promote a caught-up learner to voter", [_p("id")], errors=(401, 409, 503, 504))},
        "/v1/cluster/members/{id}": {"delete": _op(
            "Remove a node (its id is never reused)", [_p("id")], errors=(401, 409, 503, 504))},
        "/v1/cluster/leader/transfer": {"post": _op(
            "Hand leadership to the voter `to` (absent: the most caught-up live voter)",
            body="application/json", errors=(400, 401, 409, 503, 504),
            body_schema={"type": "object", "properties": {"to": {"type": "string"}}})},
        # backups (configsvc.http.backup_api; docs/backup.md)
        "/v1/cluster/snapshot": {"get": _op(
            "A backup file of the strong state machine as of a linearizable point (management "
            "token with ACLs on, else the admin token if configured)",
            ok="the backup (application/vnd.configsvc.backup), with X-Configsvc-Index and "
               "X-Configsvc-Sha256", errors=(401, 403, 503))},
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
                "required": ["error"],
            }
        }
    },
}

# ---------------------------------------------------------------- service discovery
_INSTANCE = [_NS, _p("service", _SERVICE_NAME), _p("instance_id", _SERVICE_NAME)]
_QUERY = [
    _q("passing", "boolean", "only instances whose status is passing", empty=True),
    _q("consistency", {"type": "string", "enum": ["default", "consistent", "stale"]},
       "strong: default (leader lease), consistent (quorum round) or "
       "stale (this node); eventual namespaces always answer locally"),
    _q("index", {"type": "integer", "minimum": 0, "maximum": 10**19 - 1},
       "block until X-Configsvc-Index exceeds this", empty=True),
    _q("wait", _WAIT, "seconds to block at most"),
]
OPENAPI["paths"].update({
    "/v1/services/{ns}": {
        "get": _op("Services of a namespace: tags, instances, passing (instances=true: every instance)",
                   [_NS, _q("instances", "boolean", "", empty=True), *_QUERY]),
    },
    "/v1/services/{ns}/{service}": {
        "get": _op("Instances of a service (blocking with index and wait)",
                   [_NS, _p("service", _SERVICE_NAME), *_QUERY]),
    },
    "/v1/services/{ns}/{service}/{instance_id}": {
        "put": _op("Register an instance {address, port, tags, meta, ttl, deregister_after, status, "
                   "check: {http, interval, timeout}}", _INSTANCE, body="application/json",
                   errors=(400, 404, 409, 413, 503, 504), body_schema=_REGISTRATION),
        "delete": _op("Deregister an instance", _INSTANCE, errors=(400, 404, 503, 504)),
    },
    "/v1/services/{ns}/{service}/{instance_id}/check": {
        "put": _op("Report a check result {status: passing|warning|critical, output}", _INSTANCE,
                   body="application/json", errors=(400, 404, 409, 413, 503, 504),
                   body_schema=_CHECK | {"required": ["status"]}),
    },
    "/v1/services/{ns}/{service}/{instance_id}/heartbeat": {
        "put": _op("A TTL heartbeat {status (default passing), output}", _INSTANCE,
                   body="application/json", errors=(400, 404, 409, 413, 503, 504), body_schema=_CHECK),
    },
})

# ---------------------------------------------------------------- ACL management
# (configsvc.http.acl_routes; 401 acl_disabled without acl.enabled, 403 without acl:read/write)
_ACL_ERRORS = (400, 401, 403, 404, 409, 413, 503, 504)
_ACL_NAME = {"type": "string", "minLength": 1, "maxLength": 128}
_RULE = {
    "type": "object",
    "properties": {
        "resource": {"type": "string", "enum": ["key", "service", "namespace", "acl"]},
        "prefix": {"type": "string", "maxLength": 1024},
        "access": {"type": "string", "enum": ["read", "write", "deny"]},
    },
    "required": ["resource", "access"],
    "additionalProperties": False,
}
_POLICY = {
    "type": "object",
    "properties": {"name": _ACL_NAME, "description": {"type": "string", "maxLength": 1024},
                   "rules": {"type": "array", "maxItems": 256, "items": _RULE}},
    "required": ["name"],
    "additionalProperties": False,
}
_TOKEN_FIELDS: dict[str, Any] = {
    "description": {"type": "string", "maxLength": 1024},
    "policies": {"type": "array", "maxItems": 64, "items": _ACL_NAME},
    "ttl": {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 10**9},
}
_TOKEN_SPEC = {"type": "object", "properties": _TOKEN_FIELDS, "additionalProperties": False}
_NEW_TOKEN = _TOKEN_SPEC | {"properties": _TOKEN_FIELDS | {
    "accessor_id": _ACL_NAME, "secret": {"type": "string", "minLength": 1}}}
_ACCESSOR = [_p("accessor_id", _ACL_NAME)]
_POLICY_NAME = [_p("name", _ACL_NAME)]
OPENAPI["paths"].update({
    "/v1/acl/policies": {
        "get": _op("List policies", errors=_ACL_ERRORS),
        "post": _op("Create or replace a policy {name, description, rules: [{resource, prefix, "
                    "access}]}", body="application/json", errors=_ACL_ERRORS, body_schema=_POLICY),
    },
    "/v1/acl/policies/{name}": {
        "get": _op("Read a policy", _POLICY_NAME, errors=_ACL_ERRORS),
        "delete": _op("Delete a policy", _POLICY_NAME, errors=_ACL_ERRORS),
    },
    "/v1/acl/tokens": {
        "get": _op("List tokens (never their secrets)", errors=_ACL_ERRORS),
        "post": _created(_op("Create a token {policies, description, ttl, accessor_id, secret}; "
                             "the answer shows its secret once", body="application/json",
                             errors=_ACL_ERRORS, body_schema=_NEW_TOKEN)),
    },
    "/v1/acl/tokens/self": {"get": _op("The token the request presents", errors=_ACL_ERRORS)},
    "/v1/acl/tokens/{accessor_id}": {
        "get": _op("Read a token", _ACCESSOR, errors=_ACL_ERRORS),
        "put": _op("Update a token's description, policies or ttl", _ACCESSOR,
                   body="application/json", errors=_ACL_ERRORS, body_schema=_TOKEN_SPEC),
        "delete": _op("Delete a token", _ACCESSOR, errors=_ACL_ERRORS),
    },
})
