"""Service instances: an add-wins observed-remove set with heartbeat times.

Each instance is the key ``(namespace, "svc", "<service>/<instance_id>")`` of
the dot store. Registering or heartbeating writes a sibling (the encoded
``InstanceInfo``) that supersedes every sibling of that instance the replica
has seen; deregistering removes exactly those (observed remove). So a
deregistration concurrent with a heartbeat it did not see loses: add wins,
as service discovery wants (a live instance is never hidden by a stale
removal). The instance's current record is its sibling with the highest
hybrid-logical-clock timestamp, which is also its heartbeat time.

A record carries what the instance reported (``status``: "passing",
"warning" or "critical", and ``output``, set by registration and by each
heartbeat), the node it registered with (``node``, which runs its HTTP
check) and the check itself (``check``: opaque bytes, a JSON spec that only
the service reads). Health is local (``eventual.health``): a replica shows
the reported status while it hears from the instance within ``ttl``, and
"critical" once it does not.

Encoding: a msgpack list. A record whose new fields all have their defaults
(and ``ttl > 0``) is the 6-item list of before, which replicas without them
still read; any other is the 10-item list. ``decode_info`` accepts both and
raises ``ValueError`` for anything else.
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

import msgpack
from pydantic import BaseModel, ConfigDict, Field

from eventual.dots import SVC_SPACE, Dot, Key, Sibling
from eventual.lww import resolve

__all__ = [
    "CRITICAL",
    "MAX_CHECK",
    "MAX_OUTPUT",
    "PASSING",
    "STATUSES",
    "WARNING",
    "InstanceInfo",
    "InstanceView",
    "Status",
    "decode_info",
    "instance_key",
    "resolve_instance",
]

Status = Literal["passing", "warning", "critical"]
PASSING: Status = "passing"
WARNING: Status = "warning"
CRITICAL: Status = "critical"
STATUSES: tuple[Status, ...] = (PASSING, WARNING, CRITICAL)
#: bounds of a check's output (characters), a node id, and a check spec (bytes)
MAX_OUTPUT = 4096
MAX_NODE = 256
MAX_CHECK = 4096


class InstanceInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    port: int = Field(ge=0, le=65535)
    tags: tuple[str, ...] = ()
    meta: tuple[tuple[str, str], ...] = ()
    #: seconds without a heartbeat before the instance is critical (0: no TTL)
    ttl: float = Field(default=10.0, ge=0)
    #: seconds critical before a replica removes it (0: never)
    deregister_after: float = Field(default=60.0, ge=0)
    #: the status the instance (or its check) reported last
    status: Status = PASSING
    #: the last check's output (free text)
    output: str = Field(default="", max_length=MAX_OUTPUT)
    #: the node the instance registered with (it runs the HTTP check)
    node: str = Field(default="", max_length=MAX_NODE)
    #: the HTTP check spec: opaque JSON bytes, interpreted by the service only
    check: bytes = Field(default=b"", max_length=MAX_CHECK)

    def encode(self) -> bytes:
        fields: list[object] = [self.address, self.port, list(self.tags),
                                [list(m) for m in self.meta], self.ttl, self.deregister_after]
        if (self.status, self.output, self.node, self.check) != (PASSING, "", "", b"") \
                or self.ttl == 0:
            fields += [self.status, self.output, self.node, self.check]
        data: bytes = msgpack.packb(fields, use_bin_type=True)
        return data


@lru_cache(maxsize=4096)
def decode_info(data: bytes) -> InstanceInfo:
    """Raises ``ValueError`` (pydantic's ``ValidationError`` is one) on garbage.
    Pure and cached (records are immutable; heartbeats repeat the same bytes)."""
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # the unpacker's failures are not a closed set
        raise ValueError(f"instance info is not msgpack: {exc!r}") from exc
    if not isinstance(raw, list) or len(raw) not in (6, 10):
        raise ValueError("instance info must be a 6- or 10-item list")
    address, port, tags, meta, ttl, deregister_after = raw[:6]
    status, output, node, check = raw[6:] if len(raw) == 10 else (PASSING, "", "", b"")
    if status not in STATUSES:
        raise ValueError(f"instance status must be one of {', '.join(STATUSES)}")
    if type(output) is not str or type(node) is not str or type(check) is not bytes:
        raise ValueError("instance output and node must be strings, check bytes")
    if len(raw) == 6 and ttl == 0:
        raise ValueError("a 6-item instance info has a positive ttl")
    if not isinstance(address, str) or type(port) is not int:
        raise ValueError("instance address must be a string and port an int")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError("instance tags must be a list of strings")
    if not isinstance(meta, list) or not all(
        isinstance(m, list) and len(m) == 2 and all(isinstance(x, str) for x in m) for m in meta
    ):
        raise ValueError("instance meta must be a list of string pairs")
    if not all(type(x) in (int, float) for x in (ttl, deregister_after)):
        raise ValueError("instance ttl and deregister_after must be numbers")
    return InstanceInfo(
        address=address,
        port=port,
        tags=tuple(tags),
        meta=tuple((m[0], m[1]) for m in meta),
        ttl=float(ttl),
        deregister_after=float(deregister_after),
        status=status,
        output=output,
        node=node,
        check=check,
    )


def instance_key(namespace: str, service: str, instance_id: str) -> Key:
    return (namespace, SVC_SPACE, f"{service}/{instance_id}")


class InstanceView(BaseModel):
    """One instance as a replica sees it."""

    model_config = ConfigDict(frozen=True)

    service: str
    instance_id: str
    info: InstanceInfo
    #: hybrid-logical-clock time of the latest registration or heartbeat seen
    heartbeat_hlc: int
    #: the reported status while this replica hears from the instance within its
    #: ttl, else "critical" (local, from this replica's clock: ``eventual.health``)
    status: Status


def resolve_instance(siblings: Mapping[Dot, Sibling]) -> tuple[InstanceInfo, int] | None:
    """The instance's current record and heartbeat time, or None if absent."""
    best = resolve(siblings)
    if best is None:
        return None
    return decode_info(best[1].value), best[1].hlc
