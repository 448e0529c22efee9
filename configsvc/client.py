"""Python client of the native API: sync ``Client`` and ``AsyncClient``.

- A list of endpoints with failover: a connection error or a ``503`` (which
  means "not done, safe to retry") moves on to the next endpoint.
- Writes carry ``X-Client-Id``/``X-Client-Seq``: a retried write is applied at
  most once, so retrying after a timeout is safe. ``504 outcome_unknown`` is
  retried with the same sequence number too, which settles the outcome.
  Puts and deletes also carry an ``Idempotency-Key``, one per logical write,
  reused on its retries: in an eventual namespace a retry on another node
  then never shows a second sibling (strong namespaces ignore it).
- When no attempt succeeds, the error is the most uncertain outcome seen: a
  write that may have been proposed (a ``504``, or an answer lost after the
  request was sent) stays ``504 outcome_unknown`` even if later attempts only
  saw ``503`` or refused connections; ``503`` is raised only if every attempt
  was surely not done.
- ``watch`` yields a key's (or prefix's) new state each time it changes.
- ``config_get`` fetches the keys under a prefix as one document (JSON or YAML,
  parsed), with its ``ETag`` and index; ``config_watch`` yields it again each
  time it changes (blocking fetches: docs/config-documents.md).

- ``https://`` endpoints are verified against ``ca_file`` (or the file named
  by ``$CONFIGSVC_CA_FILE``), else against the system's CAs.

Errors: ``ClientError`` with ``status`` and the server's stable ``code``.
"""

from __future__ import annotations

import base64
import builtins
import itertools
import json
import os
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from configsvc.client_acl import AclMethods, acl_headers
from configsvc.client_state import (
    ConfigDocument,
    _config_request,
    _ConfigWatch,
    _InstanceWatch,
    _items,
    _registration,
    _siblings,
    _Watch,
)
from eventual.token import decode_vv, encode_vv

DEFAULT_ENDPOINT = "http://127.0.0.1:7501"
_RETRY_STATUS = {503, 504}
TOKEN = "X-Configsvc-Token"
IDEMPOTENCY_KEY = "Idempotency-Key"


#: the environment variable naming the CA file ``https://`` endpoints are verified with
CA_FILE_ENV = "CONFIGSVC_CA_FILE"


def tls_verify(ca_file: str | None = None) -> ssl.SSLContext | bool:
    """httpx's ``verify=``: trust ``ca_file`` (default ``$CONFIGSVC_CA_FILE``), else
    the system's CAs. Raises ``OSError`` or ``ssl.SSLError`` for an unusable file."""
    ca_file = ca_file or os.environ.get(CA_FILE_ENV) or None
    return ssl.create_default_context(cafile=ca_file) if ca_file else True


def _idempotent() -> dict[str, str]:
    """Headers of one logical write: a fresh idempotency key its retries reuse."""
    return {IDEMPOTENCY_KEY: uuid.uuid4().hex}


class ClientError(Exception):
    def __init__(self, status: int, code: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body or {}


def _raise_for(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code >= 400:
        err = data.get("error", {}) if isinstance(data, dict) else {}
        raise ClientError(
            response.status_code,
            str(err.get("code", "http_error")),
            str(err.get("message", response.text[:200])),
            err,
        )
    return data if isinstance(data, dict) else {}


#: transport errors raised before any byte of the request left: nothing was sent
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class _Attempts:
    """What the attempts of one request saw; ``error()`` is the most uncertain of it."""

    def __init__(self, write: bool) -> None:
        self.write = write
        self.last: Exception | None = None
        self.unknown: ClientError | None = None

    def failed_to_send(self, exc: httpx.TransportError) -> None:
        self.last = exc
        if self.write and not isinstance(exc, _NOT_SENT) and self.unknown is None:
            self.unknown = ClientError(504, "outcome_unknown", f"the write was sent and its answer lost: {exc!r}")

    def refused(self, response: httpx.Response) -> None:
        try:
            _raise_for(response)
        except ClientError as exc:
            self.last = exc  # the server's own code, raised if no attempt succeeds
            if exc.status == 504:
                self.unknown = exc

    def error(self) -> ClientError:
        if self.unknown is not None:
            return self.unknown
        if isinstance(self.last, ClientError):
            return self.last
        return ClientError(503, "unavailable", f"no endpoint answered: {self.last}")


def decode_value(kv: dict[str, Any] | None) -> bytes | None:
    """The value of a key as the API returns it (strong: ``kv``; eventual: one sibling)."""
    if not kv or kv.get("value") is None:
        return None
    return base64.b64decode(kv["value"])


class _Base:
    def __init__(self, endpoints: Sequence[str] | str = DEFAULT_ENDPOINT, attempts: int = 6) -> None:
        self.endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not self.endpoints:
            raise ValueError("at least one endpoint is needed")
        self.attempts = attempts
        self.client_id = f"py-{uuid.uuid4().hex[:16]}"
        self._seq = itertools.count(1)
        self._current = 0
        #: the session's causal token (eventual namespaces): read-your-writes across nodes
        self.token: str | None = None

    def _url(self, path: str) -> str:
        return self.endpoints[self._current % len(self.endpoints)].rstrip("/") + path

    def _rotate(self) -> None:
        self._current += 1

    def _remember(self, response: httpx.Response) -> None:
        """Join the response's causal token into the session's (responses to concurrent
        requests may arrive in any order; the session must never move backwards)."""
        token = response.headers.get(TOKEN)
        if not token:
            return
        try:
            mine, theirs = decode_vv(self.token), decode_vv(token)
        except ValueError:
            return  # not a token this client understands: keep the one it has
        self.token = encode_vv({r: max(mine.get(r, 0), theirs.get(r, 0)) for r in mine.keys() | theirs.keys()})

    @staticmethod
    def _retry_elsewhere(response: httpx.Response) -> bool:
        if response.status_code in _RETRY_STATUS:
            return True
        if response.status_code == 409:
            try:
                return bool(response.json()["error"]["code"] == "causally_behind")
            except (ValueError, KeyError, TypeError):
                return False
        return False

    @staticmethod
    def _ns_path(ns: str) -> str:
        return f"/v1/kv/{quote(ns, safe='')}"

    @staticmethod
    def _kv_path(ns: str, key: str) -> str:
        return f"/v1/kv/{quote(ns, safe='')}/{quote(key, safe='/')}"

    @staticmethod
    def _svc_path(ns: str, *parts: str) -> str:
        return "/v1/services/" + "/".join(quote(p, safe="") for p in (ns, *parts))


class Client(AclMethods, _Base):
    def __init__(self, endpoints: Sequence[str] | str = DEFAULT_ENDPOINT, timeout: float = 10.0,
                 attempts: int = 6, transport: httpx.BaseTransport | None = None,
                 token: str | None = None, ca_file: str | None = None) -> None:
        """``token``: the ACL token every request presents (docs/acl.md); None: anonymous.
        ``ca_file``: the CA ``https://`` endpoints are verified with (``tls_verify``)."""
        super().__init__(endpoints, attempts)
        self._http = httpx.Client(timeout=timeout, transport=transport, headers=acl_headers(token),
                                  verify=tls_verify(ca_file))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, write: bool = False, **kw: Any) -> dict[str, Any]:
        return _raise_for(self._exchange(method, path, write=write, **kw))

    def _exchange(self, method: str, path: str, *, write: bool = False, **kw: Any) -> httpx.Response:
        """Send with failover and retries; the first answer not to retry elsewhere."""
        headers = dict(kw.pop("headers", {}) or {})
        if write:
            headers.update({"X-Client-Id": self.client_id, "X-Client-Seq": str(next(self._seq))})
        seen = _Attempts(write)
        for _ in range(self.attempts):
            if self.token:
                headers[TOKEN] = self.token
            try:
                response = self._http.request(method, self._url(path), headers=headers, **kw)
            except httpx.TransportError as exc:
                seen.failed_to_send(exc)
                self._rotate()
                continue
            if self._retry_elsewhere(response):
                seen.refused(response)
                self._rotate()
                continue
            self._remember(response)
            return response
        raise seen.error()

    # namespaces
    def create_namespace(self, name: str, consistency: str = "strong", merge: str = "mvr") -> dict[str, Any]:
        body = {"name": name, "consistency": consistency, "merge": merge}
        return self.request("POST", "/v1/namespaces", write=True, json=body)

    def namespaces(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/namespaces")["namespaces"])

    # keys
    def put(self, ns: str, key: str, value: bytes | str, cas: int | None = None) -> dict[str, Any]:
        data = value.encode() if isinstance(value, str) else value
        params = {"cas": cas} if cas is not None else None
        return self.request("PUT", self._kv_path(ns, key), write=True, content=data, params=params,
                            headers=_idempotent())

    def get(self, ns: str, key: str, stale: bool = False) -> bytes | None:
        """The value, or None if the key does not exist.

        Eventual namespaces: with concurrent writes (siblings) this is None; use
        ``siblings``."""
        params = {"consistency": "stale"} if stale else None
        try:
            data = self.request("GET", self._kv_path(ns, key), params=params)
            return decode_value(data.get("kv", data))
        except ClientError as exc:
            if exc.code == "key_not_found":
                return None
            raise

    def siblings(self, ns: str, key: str) -> builtins.list[bytes]:
        """Every concurrent value of an eventual key (one when there is no conflict,
        none when the key does not exist)."""
        try:
            return _siblings(self.request("GET", self._kv_path(ns, key)))
        except ClientError as exc:
            if exc.code == "key_not_found":
                return []
            raise

    def get_kv(self, ns: str, key: str, **params: Any) -> dict[str, Any]:
        return self.request("GET", self._kv_path(ns, key), params=params or None)

    def delete(self, ns: str, key: str, cas: int | None = None) -> dict[str, Any]:
        params = {"cas": cas} if cas is not None else None
        return self.request("DELETE", self._kv_path(ns, key), write=True, params=params,
                            headers=_idempotent())

    def list(self, ns: str, prefix: str = "", limit: int = 0) -> builtins.list[dict[str, Any]]:
        """Keys under ``prefix``: strong ``kvs`` (with revisions), eventual ``items`` (with siblings)."""
        params = {"prefix": prefix, "limit": limit}
        return _items(self.request("GET", self._ns_path(ns), params=params))

    def watch(self, ns: str, prefix: str = "", wait: float = 30.0) -> Iterator[builtins.list[dict[str, Any]]]:
        """Yield the keys under ``prefix`` now and every time they change (puts and deletes)."""
        state = _Watch(prefix, wait)
        while True:
            data = self.request("GET", self._ns_path(ns), params=state.params(), timeout=wait + 10)
            changed = state.step(data)
            if changed is not None:
                yield changed

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/v1/cluster/health")

    def cluster_status(self) -> dict[str, Any]:
        """Every node, namespace and reason, as the node reached sees them."""
        return self.request("GET", "/v1/cluster/status")

    # services (docs/discovery.md)
    def register(self, ns: str, service: str, instance_id: str, *, address: str | None = None,
                 port: int = 0, tags: Sequence[str] = (), meta: dict[str, str] | None = None,
                 ttl: float | None = None, deregister_after: float | None = None,
                 check: dict[str, Any] | None = None, status: str | None = None) -> dict[str, Any]:
        """Register (upsert) an instance. ``ttl``: heartbeat within it or turn critical;
        ``check``: ``{"http": url, "interval": s, "timeout": s}`` run by the node it reaches;
        ``status``: the starting status (default: critical with a TTL or check, else passing)."""
        body = _registration(address, port, tags, meta, ttl, deregister_after, check, status)
        return self.request("PUT", self._svc_path(ns, service, instance_id), write=True, json=body)

    def deregister(self, ns: str, service: str, instance_id: str) -> dict[str, Any]:
        return self.request("DELETE", self._svc_path(ns, service, instance_id), write=True)

    def check(self, ns: str, service: str, instance_id: str, status: str, output: str = "") -> dict[str, Any]:
        """Report a check result: ``passing``, ``warning`` or ``critical``."""
        body = {"status": status, "output": output}
        return self.request("PUT", self._svc_path(ns, service, instance_id, "check"), write=True, json=body)

    def heartbeat(self, ns: str, service: str, instance_id: str, status: str = "passing",
                  output: str = "") -> dict[str, Any]:
        """A TTL heartbeat (a check result, passing unless told)."""
        return self.check(ns, service, instance_id, status, output)

    def instances(self, ns: str, service: str, *, passing: bool = False,
                  consistency: str | None = None) -> builtins.list[dict[str, Any]]:
        """The instances of ``service`` (``passing``: only those passing their checks)."""
        params = _InstanceWatch(passing, consistency, 0.0).params(block=False)
        return list(self.request("GET", self._svc_path(ns, service), params=params)["instances"])

    def services(self, ns: str) -> dict[str, dict[str, Any]]:
        """Every service of ``ns``: ``{name: {"tags", "instances", "passing"}}``."""
        return dict(self.request("GET", self._svc_path(ns))["services"])

    def watch_instances(self, ns: str, service: str, *, passing: bool = False, wait: float = 30.0,
                        consistency: str | None = None) -> Iterator[builtins.list[dict[str, Any]]]:
        """Yield the instances now and every time they change (blocking queries on the index)."""
        state = _InstanceWatch(passing, consistency, wait)
        while True:
            data = self.request("GET", self._svc_path(ns, service), params=state.params(), timeout=wait + 10)
            changed = state.step(data)
            if changed is not None:
                yield changed

    # config documents
    def config_get(self, ns: str, prefix: str = "", format: str = "json", *,
                   etag: str | None = None, index: str | None = None,
                   wait: float | None = None) -> ConfigDocument | None:
        """The keys under ``prefix`` as one document; None if it still has ``etag``
        (``304``). With ``index`` (a previous document's), block up to ``wait``
        seconds for a change. Raises ClientError (``409 document_conflict``, ...)."""
        return self._config(ns, prefix, format, etag, index, wait)[0]

    def _config(self, ns: str, prefix: str, fmt: str, etag: str | None, index: str | None,
                wait: float | None) -> tuple[ConfigDocument | None, str]:
        path, params, headers = _config_request(ns, prefix, fmt, etag, index, wait)
        timeout = None if wait is None else wait + 10
        return _config_document(self._exchange("GET", path, params=params, headers=headers,
                                                timeout=timeout), fmt)

    def config_watch(self, ns: str, prefix: str = "", format: str = "json",
                     wait: float = 30.0) -> Iterator[ConfigDocument]:
        """Yield the document now and again each time it changes."""
        watch = _ConfigWatch()
        while True:
            doc = watch.step(*self._config(ns, prefix, format, *watch.params(wait)))
            if doc is not None:
                yield doc


class AsyncClient(_Base):
    def __init__(self, endpoints: Sequence[str] | str = DEFAULT_ENDPOINT, timeout: float = 10.0,
                 attempts: int = 6, transport: httpx.AsyncBaseTransport | None = None,
                 token: str | None = None, ca_file: str | None = None) -> None:
        """``token``: the ACL token every request presents (docs/acl.md); None: anonymous.
        ``ca_file``: the CA ``https://`` endpoints are verified with (``tls_verify``)."""
        super().__init__(endpoints, attempts)
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, headers=acl_headers(token),
                                  verify=tls_verify(ca_file))
        self._lanes: list[list[Any]] = []
        self._all_lanes: list[list[Any]] = []

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(self, method: str, path: str, *, write: bool = False, **kw: Any) -> dict[str, Any]:
        extra = dict(kw.pop("headers", None) or {})
        if not write:
            return await self._request(method, path, extra, **kw)
        # Concurrent writes each take a lane: a session id with its own sequence,
        # so the server's one-entry-per-session dedup table stays correct.
        lane: list[Any] = self._lanes.pop() if self._lanes else [f"{self.client_id}-{len(self._all_lanes)}", 0]
        if lane not in self._all_lanes:
            self._all_lanes.append(lane)
        lane[1] = int(lane[1]) + 1
        headers = {**extra, "X-Client-Id": str(lane[0]), "X-Client-Seq": str(lane[1])}
        try:
            return await self._request(method, path, headers, **kw)
        finally:
            self._lanes.append(lane)

    async def _request(self, method: str, path: str, headers: dict[str, str], **kw: Any) -> dict[str, Any]:
        return _raise_for(await self._exchange(method, path, headers, **kw))

    async def _exchange(self, method: str, path: str, headers: dict[str, str],
                        **kw: Any) -> httpx.Response:
        """Send with failover and retries; the first answer not to retry elsewhere."""
        seen = _Attempts("X-Client-Id" in headers)
        for _ in range(self.attempts):
            if self.token:
                headers[TOKEN] = self.token
            try:
                response = await self._http.request(method, self._url(path), headers=headers, **kw)
            except httpx.TransportError as exc:
                seen.failed_to_send(exc)
                self._rotate()
                continue
            if self._retry_elsewhere(response):
                seen.refused(response)
                self._rotate()
                continue
            self._remember(response)
            return response
        raise seen.error()

    # namespaces
    async def create_namespace(self, name: str, consistency: str = "strong", merge: str = "mvr") -> dict[str, Any]:
        body = {"name": name, "consistency": consistency, "merge": merge}
        return await self.request("POST", "/v1/namespaces", write=True, json=body)

    async def namespaces(self) -> list[dict[str, Any]]:
        return list((await self.request("GET", "/v1/namespaces"))["namespaces"])

    # keys
    async def put(self, ns: str, key: str, value: bytes | str, cas: int | None = None) -> dict[str, Any]:
        data = value.encode() if isinstance(value, str) else value
        params = {"cas": cas} if cas is not None else None
        return await self.request("PUT", self._kv_path(ns, key), write=True, content=data,
                                  params=params, headers=_idempotent())

    async def get(self, ns: str, key: str, stale: bool = False) -> bytes | None:
        """The value, or None if the key does not exist (or, eventual, has siblings)."""
        params = {"consistency": "stale"} if stale else None
        try:
            data = await self.request("GET", self._kv_path(ns, key), params=params)
        except ClientError as exc:
            if exc.code == "key_not_found":
                return None
            raise
        return decode_value(data.get("kv", data))

    async def siblings(self, ns: str, key: str) -> builtins.list[bytes]:
        """Every concurrent value of an eventual key, as ``Client.siblings``."""
        try:
            return _siblings(await self.request("GET", self._kv_path(ns, key)))
        except ClientError as exc:
            if exc.code == "key_not_found":
                return []
            raise

    async def get_kv(self, ns: str, key: str, **params: Any) -> dict[str, Any]:
        return await self.request("GET", self._kv_path(ns, key), params=params or None)

    async def delete(self, ns: str, key: str, cas: int | None = None) -> dict[str, Any]:
        params = {"cas": cas} if cas is not None else None
        return await self.request("DELETE", self._kv_path(ns, key), write=True, params=params,
                                  headers=_idempotent())

    async def list(self, ns: str, prefix: str = "", limit: int = 0) -> builtins.list[dict[str, Any]]:
        """Keys under ``prefix``, as ``Client.list``."""
        return _items(await self.request("GET", self._ns_path(ns), params={"prefix": prefix, "limit": limit}))

    async def watch(self, ns: str, prefix: str = "", wait: float = 30.0) -> AsyncIterator[builtins.list[dict[str, Any]]]:
        """Yield the keys under ``prefix`` now and every time they change, as ``Client.watch``."""
        state = _Watch(prefix, wait)
        while True:
            data = await self.request("GET", self._ns_path(ns), params=state.params(), timeout=wait + 10)
            changed = state.step(data)
            if changed is not None:
                yield changed

    async def health(self) -> dict[str, Any]:
        return await self.request("GET", "/v1/cluster/health")

    async def cluster_status(self) -> dict[str, Any]:
        return await self.request("GET", "/v1/cluster/status")

    # services (docs/discovery.md), as ``Client``
    async def register(self, ns: str, service: str, instance_id: str, *, address: str | None = None,
                       port: int = 0, tags: Sequence[str] = (), meta: dict[str, str] | None = None,
                       ttl: float | None = None, deregister_after: float | None = None,
                       check: dict[str, Any] | None = None, status: str | None = None) -> dict[str, Any]:
        body = _registration(address, port, tags, meta, ttl, deregister_after, check, status)
        return await self.request("PUT", self._svc_path(ns, service, instance_id), write=True, json=body)

    async def deregister(self, ns: str, service: str, instance_id: str) -> dict[str, Any]:
        return await self.request("DELETE", self._svc_path(ns, service, instance_id), write=True)

    async def check(self, ns: str, service: str, instance_id: str, status: str,
                    output: str = "") -> dict[str, Any]:
        body = {"status": status, "output": output}
        path = self._svc_path(ns, service, instance_id, "check")
        return await self.request("PUT", path, write=True, json=body)

    async def heartbeat(self, ns: str, service: str, instance_id: str, status: str = "passing",
                        output: str = "") -> dict[str, Any]:
        return await self.check(ns, service, instance_id, status, output)

    async def instances(self, ns: str, service: str, *, passing: bool = False,
                        consistency: str | None = None) -> builtins.list[dict[str, Any]]:
        params = _InstanceWatch(passing, consistency, 0.0).params(block=False)
        return list((await self.request("GET", self._svc_path(ns, service), params=params))["instances"])

    async def services(self, ns: str) -> dict[str, dict[str, Any]]:
        return dict((await self.request("GET", self._svc_path(ns)))["services"])

    async def watch_instances(self, ns: str, service: str, *, passing: bool = False, wait: float = 30.0,
                              consistency: str | None = None) -> AsyncIterator[builtins.list[dict[str, Any]]]:
        state = _InstanceWatch(passing, consistency, wait)
        while True:
            data = await self.request("GET", self._svc_path(ns, service), params=state.params(),
                                      timeout=wait + 10)
            changed = state.step(data)
            if changed is not None:
                yield changed

    # config documents
    async def config_get(self, ns: str, prefix: str = "", format: str = "json", *,
                         etag: str | None = None, index: str | None = None,
                         wait: float | None = None) -> ConfigDocument | None:
        """As ``Client.config_get``."""
        return (await self._config(ns, prefix, format, etag, index, wait))[0]

    async def _config(self, ns: str, prefix: str, fmt: str, etag: str | None, index: str | None,
                      wait: float | None) -> tuple[ConfigDocument | None, str]:
        path, params, headers = _config_request(ns, prefix, fmt, etag, index, wait)
        timeout = None if wait is None else wait + 10
        response = await self._exchange("GET", path, headers, params=params, timeout=timeout)
        return _config_document(response, fmt)

    async def config_watch(self, ns: str, prefix: str = "", format: str = "json",
                           wait: float = 30.0) -> AsyncIterator[ConfigDocument]:
        """As ``Client.config_watch``."""
        watch = _ConfigWatch()
        while True:
            doc = watch.step(*await self._config(ns, prefix, format, *watch.params(wait)))
            if doc is not None:
                yield doc


def _config_document(response: httpx.Response, fmt: str) -> tuple[ConfigDocument | None, str]:
    """The document (None: ``304``, unchanged) and the index to block on next."""
    index = response.headers.get("X-Configsvc-Index", "")
    if response.status_code == 304:
        return None, index
    if response.status_code >= 400:
        _raise_for(response)
    text = response.text
    data = yaml.safe_load(text) if fmt == "yaml" else json.loads(text)
    return ConfigDocument(data, text, response.headers.get("ETag", ""), index, fmt), index
