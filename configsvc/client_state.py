"""What the Python clients keep between requests and build for them, without IO:
the state of a watch (the index to block on, the last answer yielded), request
bodies, and fetched config documents. Shared by ``Client`` and ``AsyncClient``
(``configsvc.client``)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class ConfigDocument:
    """A config document as fetched: parsed ``data``, the ``text`` as served, its
    ``etag`` and the ``index`` to block on for the next change."""

    data: Any
    text: str
    etag: str
    index: str
    format: str


def _config_request(ns: str, prefix: str, fmt: str, etag: str | None, index: str | None,
                    wait: float | None) -> tuple[str, dict[str, Any], dict[str, str]]:
    if fmt not in ("json", "yaml"):
        raise ValueError("format must be 'json' or 'yaml'")
    path = f"/v1/config/{quote(ns, safe='')}/{quote(prefix, safe='/')}"
    params: dict[str, Any] = {"format": fmt}
    if index is not None:
        params["index"] = index
    if wait is not None:
        params["wait"] = wait
    return path, params, {"If-None-Match": etag} if etag else {}

class _ConfigWatch:
    """Where a document watch stands: the last document yielded and the index to
    block on (taken from every answer, ``304`` included, so a wake-up that changed
    nothing in the document does not leave the next request answering at once)."""

    def __init__(self) -> None:
        self.last: ConfigDocument | None = None
        self.index: str | None = None

    def params(self, wait: float) -> tuple[str | None, str | None, float | None]:
        if self.last is None:
            return None, None, None
        return self.last.etag, self.index, wait

    def step(self, doc: ConfigDocument | None, index: str) -> ConfigDocument | None:
        """The document to yield, or None if it did not change."""
        self.index = index or self.index
        if doc is None or (self.last is not None and doc.etag == self.last.etag):
            return None
        self.last = doc
        return doc

def _siblings(data: dict[str, Any]) -> list[bytes]:
    return [base64.b64decode(s["value"]) for s in data.get("siblings", [])]


def _items(data: dict[str, Any]) -> list[dict[str, Any]]:
    return list(data["kvs"] if "kvs" in data else data["items"])


class _Watch:
    """Where a watch stands: the index to block on and the last answer it yielded.

    The index is the previous answer's ``revision`` (strong: the server blocks until
    the prefix's content differs from what it was at that revision, deletes
    included) or ``index`` (eventual: a digest of the content). A server may
    answer early; only an answer whose content differs is yielded."""

    def __init__(self, prefix: str, wait: float) -> None:
        self.prefix = prefix
        self.wait = wait
        self.index: int | str | None = None
        self.last: list[dict[str, Any]] | None = None

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"prefix": self.prefix, "wait": self.wait}
        if self.index is not None:
            params["index"] = self.index
        return params

    def step(self, data: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The new content to yield, or None if it did not change."""
        self.index = data["index"] if "items" in data else data["revision"]
        content = _items(data)
        if content == self.last:
            return None
        self.last = content
        return list(content)


def _registration(address: str | None, port: int, tags: Sequence[str], meta: dict[str, str] | None,
                  ttl: float | None, deregister_after: float | None, check: dict[str, Any] | None,
                  status: str | None) -> dict[str, Any]:
    """The native registration body; fields left out take the server's defaults."""
    body: dict[str, Any] = {"port": port, "tags": list(tags), "meta": dict(meta or {})}
    optional = {"address": address, "ttl": ttl, "deregister_after": deregister_after,
                "check": check, "status": status}
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


class _InstanceWatch:
    """Where a watch of a service stands: the index to block on, the last answer yielded.

    The index is the answer's ``index`` (strong: a revision; eventual: the serving
    node's change index). An index that goes backwards means another node (or a
    restored one) answered: the next query asks without an index (Consul's rule),
    and only an answer whose content differs is yielded."""

    def __init__(self, passing: bool, consistency: str | None, wait: float) -> None:
        self.passing = passing
        self.consistency = consistency
        self.wait = wait
        self.index: int | None = None
        self.last: list[dict[str, Any]] | None = None

    def params(self, block: bool = True) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.passing:
            params["passing"] = "true"
        if self.consistency:
            params["consistency"] = self.consistency
        if block and self.index is not None:
            params.update(index=self.index, wait=self.wait)
        return params

    def step(self, data: dict[str, Any]) -> list[dict[str, Any]] | None:
        index = int(data["index"])
        self.index = None if self.index is not None and index < self.index else index
        content = list(data["instances"])
        if content == self.last:
            return None
        self.last = content
        return list(content)
