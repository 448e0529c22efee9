"""The values of service discovery: registrations, instances, and what queries return.

Shared by every face (the native API, the Consul face, the Python client's
server side) so that a registration means the same thing wherever it arrives.
Every constructor validates (``ValueError`` names the field), so a value that
exists is a value the stores accept:

- service names and instance ids: 1-256 characters, no ``/``, no control characters;
- ``status`` is one of ``passing``, ``warning``, ``critical`` (Consul's three);
- durations are seconds, ``0 < d <= MAX_SECONDS``; ``None`` means "no TTL check" /
  "never deregister";
- an HTTP check's URL is ``http://`` or ``https://`` and its interval at least
  ``MIN_INTERVAL``.

An HTTP-checked instance without a TTL gets one (``implicit_ttl``): the node
that runs the check also heartbeats through it, so the instance turns critical
when that node stops checking (dies, or is cut off), as Consul's agent-bound
checks do.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_SECONDS",
    "MIN_INTERVAL",
    "STATUSES",
    "HttpCheck",
    "Instance",
    "InstancesView",
    "Registration",
    "ServiceSummary",
    "WriteOutcome",
    "check_name",
    "check_status",
    "implicit_ttl",
    "service_summary",
]

STATUSES = ("passing", "warning", "critical")
#: the longest TTL, deregistration delay, check interval or timeout accepted (one year)
MAX_SECONDS = 365 * 24 * 3600.0
MIN_INTERVAL = 0.05
MAX_NAME = 256
MAX_TAGS = 64
MAX_META = 64
MAX_TAG = 256
MAX_META_KEY = 128
MAX_META_VALUE = 512
MAX_ADDRESS = 256
MAX_OUTPUT = 4096


def check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME:
        raise ValueError(f"{what} must be a string of 1-{MAX_NAME} characters")
    if "/" in value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{what} must not contain '/' or control characters")
    return value


def check_status(value: object) -> str:
    if value not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    return str(value)


def _seconds(value: object, what: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a number of seconds")
    if value <= 0 or value < minimum or value > MAX_SECONDS:
        low = f"at least {minimum}" if minimum else "more than 0"
        raise ValueError(f"{what} must be {low} and at most {MAX_SECONDS:.0f} seconds")
    return float(value)


def _optional_seconds(value: object, what: str) -> float | None:
    return None if value is None else _seconds(value, what)


@dataclass(frozen=True)
class HttpCheck:
    """``GET http`` every ``interval`` seconds, giving up after ``timeout``: 2xx is
    passing, 429 warning, anything else (or no answer) critical."""

    http: str
    interval: float = 10.0
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.http, str) or not self.http.startswith(("http://", "https://")):
            raise ValueError("check.http must be an http:// or https:// URL")
        if len(self.http) > 2048:
            raise ValueError("check.http is limited to 2048 characters")
        object.__setattr__(self, "interval", _seconds(self.interval, "check.interval", MIN_INTERVAL))
        object.__setattr__(self, "timeout", _seconds(self.timeout, "check.timeout"))

    def to_json(self) -> dict[str, Any]:
        return {"http": self.http, "interval": self.interval, "timeout": self.timeout}

    def encode(self) -> bytes:
        """The opaque bytes the stores keep (JSON; only configsvc interprets them)."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> HttpCheck | None:
        """The check the stores hold, or None (no check, or bytes this code cannot read)."""
        if not data:
            return None
        try:
            spec = json.loads(data)
            return cls(spec["http"], spec["interval"], spec["timeout"])
        except (ValueError, KeyError, TypeError):
            return None


def implicit_ttl(check: HttpCheck) -> float:
    """The TTL of an HTTP-checked instance registered without one: three missed
    intervals (plus the timeout) of silence from the node running the check."""
    return min(MAX_SECONDS, 3 * check.interval + check.timeout)


@dataclass(frozen=True)
class Registration:
    """What a client registers; an upsert of ``(service, instance_id)``."""

    service: str
    instance_id: str
    address: str
    port: int = 0
    tags: tuple[str, ...] = ()
    meta: tuple[tuple[str, str], ...] = ()
    #: seconds a heartbeat keeps the instance fresh; None: no TTL check
    ttl: float | None = None
    #: seconds critical before the instance is removed; None: never
    deregister_after: float | None = None
    http_check: HttpCheck | None = None
    #: the status it starts with
    status: str = "passing"

    def __post_init__(self) -> None:
        check_name(self.service, "service")
        check_name(self.instance_id, "instance id")
        if not isinstance(self.address, str) or len(self.address) > MAX_ADDRESS:
            raise ValueError(f"address must be a string of at most {MAX_ADDRESS} characters")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError("port must be an integer in 0..65535")
        tags: object = self.tags
        if not isinstance(tags, tuple | list) or not all(isinstance(t, str) and 0 < len(t) <= MAX_TAG for t in tags):
            raise ValueError(f"tags must be a list of 1-{MAX_TAG} character strings")
        if len(tags) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags")
        object.__setattr__(self, "tags", tuple(dict.fromkeys(tags)))
        meta = tuple(self.meta)
        if len(meta) > MAX_META or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= MAX_META_KEY
            and len(v) <= MAX_META_VALUE for k, v in meta
        ):
            raise ValueError(f"meta must map at most {MAX_META} keys of 1-{MAX_META_KEY} characters "
                             f"to strings of at most {MAX_META_VALUE}")
        object.__setattr__(self, "meta", tuple(sorted(dict(meta).items())))
        object.__setattr__(self, "ttl", _optional_seconds(self.ttl, "ttl"))
        object.__setattr__(self, "deregister_after", _optional_seconds(self.deregister_after,
                                                                       "deregister_after"))
        if self.http_check is not None and not isinstance(self.http_check, HttpCheck):
            raise ValueError("check must be an HTTP check")
        check_status(self.status)

    @property
    def effective_ttl(self) -> float | None:
        """The TTL the stores enforce: the given one, else ``implicit_ttl`` of an HTTP check."""
        if self.ttl is None and self.http_check is not None:
            return implicit_ttl(self.http_check)
        return self.ttl

    def to_json(self) -> dict[str, Any]:
        """The native API's registration body (``from_json`` reads it back)."""
        return {
            "address": self.address, "port": self.port, "tags": list(self.tags),
            "meta": dict(self.meta), "ttl": self.ttl, "deregister_after": self.deregister_after,
            "check": self.http_check.to_json() if self.http_check else None, "status": self.status,
        }

    @classmethod
    def from_json(cls, service: str, instance_id: str, body: dict[str, Any],
                  default_address: str) -> Registration:
        """Raises ``ValueError`` naming the offending field (unknown fields included)."""
        known = {"address", "port", "tags", "meta", "ttl", "deregister_after", "check", "status"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        meta = body.get("meta")
        meta = {} if meta is None else meta
        if not isinstance(meta, dict):
            raise ValueError("meta must be an object of strings")
        tags = body.get("tags")
        tags = [] if tags is None else tags
        if not isinstance(tags, list):
            raise ValueError("tags must be a list of strings")
        check = body.get("check")
        http_check = None
        if check is not None:
            if not isinstance(check, dict) or set(check) - {"http", "interval", "timeout"}:
                raise ValueError("check must be {http, interval, timeout}")
            interval = check.get("interval", 10.0)
            timeout = check.get("timeout")
            if timeout is None:
                timeout = min(interval, 10.0) if isinstance(interval, int | float) else interval
            http_check = HttpCheck(check.get("http"), interval, timeout)  # type: ignore[arg-type]
        with_check = body.get("ttl") is not None or http_check is not None
        return cls(
            service=service, instance_id=instance_id,
            address=default_address if body.get("address") in (None, "") else body["address"],
            port=body.get("port", 0),
            tags=tuple(tags), meta=tuple(meta.items()), ttl=body.get("ttl"),
            deregister_after=body.get("deregister_after"), http_check=http_check,
            # Consul's rule: a checked instance is critical until its first check passes.
            status=body.get("status", "critical" if with_check else "passing"),
        )


@dataclass(frozen=True)
class Instance:
    """One registered instance as a query returns it."""

    service: str
    instance_id: str
    address: str
    port: int
    tags: tuple[str, ...]
    meta: tuple[tuple[str, str], ...]
    #: the node it registered with (which runs its HTTP check)
    node: str
    status: str
    output: str
    ttl: float | None
    deregister_after: float | None
    http_check: HttpCheck | None
    #: strong namespaces: the revisions of its registration and last visible change
    #: (eventual namespaces have no global order: 0)
    create_index: int = 0
    modify_index: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service, "instance_id": self.instance_id, "address": self.address,
            "port": self.port, "tags": list(self.tags), "meta": dict(self.meta), "node": self.node,
            "status": self.status, "output": self.output, "ttl": self.ttl,
            "deregister_after": self.deregister_after,
            "check": self.http_check.to_json() if self.http_check else None,
            "create_index": self.create_index, "modify_index": self.modify_index,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Instance:
        check = data.get("check")
        return cls(
            service=data["service"], instance_id=data["instance_id"], address=data["address"],
            port=data["port"], tags=tuple(data["tags"]), meta=tuple(sorted(data["meta"].items())),
            node=data["node"], status=data["status"], output=data["output"], ttl=data["ttl"],
            deregister_after=data["deregister_after"],
            http_check=HttpCheck(**check) if check else None,
            create_index=data["create_index"], modify_index=data["modify_index"],
        )


@dataclass
class InstancesView:
    """The answer to an instance query.

    ``index``: strong namespaces, the revision at which the answer last changed;
    eventual namespaces, the serving node's change index of the namespace (never
    backwards on one node). A blocking query with ``index=I`` returns once the
    index exceeds ``I`` or the wait ends. ``consistency`` is what the answer
    really is: ``leader-lease`` | ``consistent`` | ``stale`` | ``local``."""

    instances: list[Instance]
    index: int
    headers: dict[str, str]
    consistency: str
    known_leader: bool = True
    last_contact_ms: int = 0


@dataclass(frozen=True)
class WriteOutcome:
    """A registration, check update or deregistration that was done.

    ``index``: strong, the revision after it (``changed`` False when nothing visible
    changed, e.g. a heartbeat repeating the status); eventual, the node's change index."""

    index: int
    changed: bool = True
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ServiceSummary:
    tags: list[str]
    instances: int
    passing: int


def service_summary(instances: list[Instance]) -> dict[str, ServiceSummary]:
    """Per service (sorted by name): the union of tags, how many instances, how many passing."""
    out: dict[str, ServiceSummary] = {}
    for inst in sorted(instances, key=lambda i: (i.service, i.instance_id)):
        s = out.setdefault(inst.service, ServiceSummary([], 0, 0))
        s.tags.extend(t for t in inst.tags if t not in s.tags)
        s.instances += 1
        s.passing += inst.status == "passing"
    return out
