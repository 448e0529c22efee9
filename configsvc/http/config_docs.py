"""Config documents: the keys under a prefix as one nested JSON or YAML document.

    GET /v1/config/{ns}/{prefix}?format=json|yaml

How an application fetches its whole configuration in one call, and blocks
for the next change. Strong and eventual namespaces alike, through the read
paths of a key listing (``StrongApi.range_read``, ``EventualApi.list_read``):
the same consistency parameters, forwarding, session tokens and blocking.

Rules:

1. Tree. The prefix names a folder: trailing ``/`` ignored, empty = the whole
   namespace. The document holds the key equal to the prefix and every key
   under ``prefix/``, each at the path of its name relative to the prefix,
   split on ``/``: ``a/b/c = 1`` becomes ``{"a": {"b": {"c": "1"}}}``. A key
   equal to the prefix is the document itself (a scalar document). A key
   ending in ``/`` with an empty value is a folder marker (an empty mapping
   at its path, as Consul's UI writes them).
2. Values are UTF-8 text and stay strings: ``"1"`` is ``"1"``, never guessed
   into a number (the YAML rendering quotes what would read as another type),
   so a document round-trips to exactly the values stored.
3. Nothing is dropped silently. A key that is both a value and a prefix of
   other keys (``a = 1`` and ``a/b = 2``) is ``409 document_conflict`` naming
   both; a value (or key) that is not UTF-8 is ``422 not_utf8`` naming the
   keys; an eventual key with concurrent values (siblings) is
   ``409 concurrent_values`` naming the keys — resolve it by writing the key
   with its read context (retries of one write are one value, not siblings).
4. ``ETag``: a hash of the document as rendered (so JSON and YAML differ),
   for both kinds of namespace. ``If-None-Match`` holding it (or ``*``)
   answers ``304`` with no body.
5. Blocking, as for a key listing: ``?index=`` the ``X-Configsvc-Index`` of
   the last answer (strong: the revision; eventual: a digest of the keys'
   content) and ``?wait=`` seconds: the answer comes once the keys under the
   prefix changed, or when the wait ends (then, with a matching
   ``If-None-Match``, a ``304``).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import yaml
from starlette.requests import Request
from starlette.responses import Response

from configsvc.http.errors import ApiError, bad_request

if TYPE_CHECKING:
    from configsvc.http.eventual_api import EventualApi
    from configsvc.http.strong_api import StrongApi

__all__ = ["FORMATS", "INDEX", "ConfigDocs", "DocumentError", "build_document", "render"]

INDEX = "X-Configsvc-Index"
FORMATS = {"json": "application/json", "yaml": "application/yaml"}


class DocumentError(ValueError):
    """Keys that do not make one document (rule 3); ``api_error`` says how to answer."""

    def __init__(self, status: int, code: str, message: str, keys: list[str]) -> None:
        super().__init__(message)
        self.status, self.code, self.keys = status, code, keys

    def api_error(self) -> ApiError:
        return ApiError(self.status, self.code, str(self), keys=self.keys)


def build_document(prefix: str, items: list[tuple[bytes, list[bytes]]]) -> Any:
    """The nested document of ``items`` (key, values) under folder ``prefix`` (rules
    1-3); keys outside the folder are ignored. Raises DocumentError."""
    folder = prefix.rstrip("/")
    bad: list[str] = []
    siblings: list[str] = []
    leaves: dict[tuple[str, ...], tuple[str, str]] = {}  # path -> (key, value)
    folders: set[tuple[str, ...]] = set()
    for raw_key, values in items:
        key = raw_key.decode("utf-8", "replace")
        if folder and key != folder and not key.startswith(folder + "/"):
            continue
        if len(values) != 1:
            siblings.append(key)
            continue
        try:
            raw_key.decode("utf-8")
            value = values[0].decode("utf-8")
        except UnicodeDecodeError:
            bad.append(key)
            continue
        rel = key[len(folder):].removeprefix("/") if folder else key
        path = tuple(rel.split("/")) if rel else ()
        if path and path[-1] == "" and not values[0]:
            folders.add(path[:-1])
        else:
            leaves[path] = (key, value)
    if bad:
        raise DocumentError(422, "not_utf8", f"not UTF-8 text: {sorted(bad)}", sorted(bad))
    if siblings:
        raise DocumentError(409, "concurrent_values", f"keys with concurrent values (siblings): "
                            f"{sorted(siblings)}; write each with its read context to resolve",
                            sorted(siblings))
    inner = {p[:i] for p in [*leaves, *folders] for i in range(len(p))} | folders
    for path, (key, _) in sorted(leaves.items()):
        if path in inner:
            under = sorted(k for p, (k, _) in leaves.items() if p[:len(path)] == path and p != path)
            keys = [key, *under[:3]]
            raise DocumentError(409, "document_conflict", f"key {key!r} is both a value and a "
                                f"prefix of {under[:3] or 'a folder'}", keys)
    if () in leaves:
        return leaves[()][1]
    doc: dict[str, Any] = {}
    for path in sorted(folders):
        _place(doc, path, None)
    for path, (_, value) in sorted(leaves.items()):
        _place(doc, path, value)
    return doc


def _place(doc: dict[str, Any], path: tuple[str, ...], value: str | None) -> None:
    node = doc
    for part in path[:-1] if value is not None else path:
        node = node.setdefault(part, {})
    if value is not None:
        node[path[-1]] = value


def render(doc: Any, fmt: str) -> bytes:
    if fmt == "yaml":
        return yaml.safe_dump(doc, sort_keys=True, allow_unicode=True,
                              default_flow_style=False).encode()
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, indent=2).encode() + b"\n"


def _matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


class ConfigDocs:
    def __init__(self, strong: StrongApi, eventual: EventualApi) -> None:
        self.strong = strong
        self.eventual = eventual

    async def get(self, request: Request, ns: str, prefix: str, kind: str) -> Response:
        fmt = request.query_params.get("format", "json")
        if fmt not in FORMATS:
            raise bad_request("format must be 'json' or 'yaml'")
        try:  # refused even when the answer would not block
            wait = float(request.query_params.get("wait", "0"))
        except ValueError:
            wait = -1.0
        if not wait >= 0:
            raise bad_request("wait must be a non-negative number of seconds")
        headers: dict[str, str] = {}
        items: list[tuple[bytes, list[bytes]]]
        if kind == "eventual":
            body, headers, result = await self.eventual.list_read(request, ns, prefix.rstrip("/"))
            items = [(k.encode(), [s.value for s in sibs]) for k, sibs in result.items]
            headers = {**headers, INDEX: str(body["index"])}
        else:
            outcome = await self.strong.range_read(request, ns, prefix.rstrip("/").encode())
            if isinstance(outcome, Response):
                return outcome  # answered by the leader
            ranged, headers = outcome
            items = [(kv.key, [kv.value]) for kv in ranged.kvs]
            headers = {**headers, INDEX: str(ranged.revision)}
        try:
            data = render(build_document(prefix, items), fmt)
        except DocumentError as exc:
            raise exc.api_error() from None
        etag = f'"{hashlib.sha256(data).hexdigest()[:32]}"'
        headers["ETag"] = etag
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=FORMATS[fmt], headers=headers)
