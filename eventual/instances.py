"""Service instances: an add-wins observed-remove set with heartbeat times.

Each instance is the key ``(namespace, "svc", "<service>/<instance_id>")`` of
the dot store. Registering or heartbeating writes a sibling (the encoded
``InstanceInfo``) that supersedes every sibling of that instance the replica
has seen; deregistering removes exactly those (observed remove). So a
deregistration concurrent with a heartbeat it did not see loses: add wins,
as service discovery wants (a live instance is never hidden by a stale
removal). The instance's current record is its sibling with the highest
hybrid-logical-clock timestamp, which is also its heartbeat time.

Health is local (Eureka/Consul-agent style, not replicated): a replica marks
an instance ``critical`` when it has not *seen* a registration or heartbeat
for it within ``ttl`` of its own clock, and removes it after
``deregister_after`` of silence (both local durations, immune to clock
offsets between nodes).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import msgpack
from pydantic import BaseModel, ConfigDict, Field

from eventual.dots import SVC_SPACE, Dot, Key, Sibling
from eventual.lww import resolve

__all__ = ["InstanceInfo", "InstanceView", "decode_info", "instance_key", "resolve_instance"]


class InstanceInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    port: int = Field(ge=0, le=65535)
    tags: tuple[str, ...] = ()
    meta: tuple[tuple[str, str], ...] = ()
    #: seconds without a heartbeat before the instance is critical
    ttl: float = Field(default=10.0, gt=0)
    #: seconds without a heartbeat before a replica removes it (0: never)
    deregister_after: float = Field(default=60.0, ge=0)

    def encode(self) -> bytes:
        data: bytes = msgpack.packb(
            [self.address, self.port, list(self.tags), [list(m) for m in self.meta],
             self.ttl, self.deregister_after],
            use_bin_type=True,
        )
        return data


@lru_cache(maxsize=4096)
def decode_info(data: bytes) -> InstanceInfo:
    """Raises ``ValueError`` (pydantic's ``ValidationError`` is one) on garbage.
    Pure and cached (records are immutable; heartbeats repeat the same bytes)."""
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # the unpacker's failures are not a closed set
        raise ValueError(f"instance info is not msgpack: {exc!r}") from exc
    if not isinstance(raw, list) or len(raw) != 6:
        raise ValueError("instance info must be a 6-item list")
    address, port, tags, meta, ttl, deregister_after = raw
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
    #: "passing" or "critical" (local, from this replica's clock)
    status: str


def resolve_instance(siblings: Mapping[Dot, Sibling]) -> tuple[InstanceInfo, int] | None:
    """The instance's current record and heartbeat time, or None if absent."""
    best = resolve(siblings)
    if best is None:
        return None
    return decode_info(best[1].value), best[1].hlc
