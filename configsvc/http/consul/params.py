"""Query parameters of the Consul face: checked against what each endpoint supports.

Rules (what every endpoint relies on):

1. A parameter the endpoint does not support is a ``400 unsupported_parameter``
   naming it and listing what the endpoint does take; nothing happens.
2. ``dc`` must name this cluster's datacenter (``consul.datacenter``);
   ``token`` (like the ``X-Consul-Token`` header) is the ACL token, checked by
   ``configsvc.http.acl`` before the handler runs (docs/acl.md).
3. Boolean parameters are true when present (``?recurse``), as Consul reads
   them, unless their value says ``false`` or ``0``.
4. ``index`` is an unsigned 64-bit integer (``0`` = do not block); ``wait`` a
   Go duration (``10s``, ``1m30s``, ``250ms``; ``0`` allowed), capped at the
   node's ``limits.watch_max_seconds``, 5 minutes when absent (Consul's
   default). Anything else is a ``400`` naming the parameter.
5. ``stale`` and ``consistent`` exclude each other (Consul's rule).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from starlette.requests import Request

from configsvc.http.errors import ApiError, bad_request

Mode = Literal["default", "consistent", "stale"]

#: accepted on every endpoint (rule 2)
COMMON = frozenset({"dc", "token"})
#: the parameters of a blocking read in any consistency mode
BLOCKING_READ = frozenset({"index", "wait", "stale", "consistent"})

MAX_UINT64 = (1 << 64) - 1
DEFAULT_WAIT = 300.0
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DIGITS = re.compile(r"[0-9]{1,20}")
_DURATION = re.compile(r"([0-9]{1,12}(?:\.[0-9]{0,9})?|\.[0-9]{1,9})(ns|us|µs|μs|ms|s|m|h)")


def unsupported(what: str, detail: str = "") -> ApiError:
    """A 400 naming what this face does not support (docs/consul.md lists what it does)."""
    message = f"{what} is not supported by this Consul-compatible API"
    return ApiError(400, "unsupported", message + (f": {detail}" if detail else ""))


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (``1m30s``); ValueError if it is not one or is negative."""
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{text!r} is not a duration such as 10s, 1m30s or 250ms")
    return total


class Query:
    """One request's query parameters, validated against ``allowed`` (rule 1)."""

    def __init__(self, request: Request, allowed: Iterable[str], datacenter: str) -> None:
        self.params = request.query_params
        supported = frozenset(allowed) | COMMON
        unknown = sorted(set(self.params.keys()) - supported)
        if unknown:
            listed = ", ".join(sorted(supported))
            raise ApiError(400, "unsupported_parameter",
                           f"unsupported query parameter(s) {', '.join(unknown)} on "
                           f"{request.method} {request.url.path}; supported here: {listed}")
        dc = self.params.get("dc")
        if dc not in (None, "", datacenter):
            raise ApiError(400, "unknown_datacenter",
                           f"no datacenter {dc!r}: this cluster is datacenter {datacenter!r}")

    def flag(self, name: str) -> bool:
        """Rule 3: present means true, unless the value is ``false`` or ``0``."""
        if name not in self.params:
            return False
        return self.params[name].lower() not in ("false", "0")

    def text(self, name: str) -> str | None:
        return self.params.get(name)

    def uint(self, name: str) -> int | None:
        """An unsigned 64-bit integer parameter, or None when absent."""
        text = self.params.get(name)
        if text is None or text == "":
            return None
        if not _DIGITS.fullmatch(text) or int(text) > MAX_UINT64:
            raise bad_request(f"{name} must be an unsigned 64-bit integer, got {text[:40]!r}")
        return int(text)

    def index(self) -> int:
        """The blocking index; 0 (absent or ``0``) means answer at once."""
        return self.uint("index") or 0

    def wait(self, limit: float) -> float:
        text = self.params.get("wait")
        if text is None or text == "":
            return min(DEFAULT_WAIT, limit)
        try:
            seconds = parse_duration(text.strip())
        except ValueError as exc:
            raise bad_request(f"wait: {exc}") from None
        return min(seconds, limit)

    def mode(self) -> Mode:
        stale, consistent = self.flag("stale"), self.flag("consistent")
        if stale and consistent:
            raise bad_request("stale and consistent exclude each other")
        return "stale" if stale else "consistent" if consistent else "default"
