"""Eventual store: a sans-IO causal+ gossip replica with CRDT merge.

Every module is pure (no IO, no clock, no global randomness, nothing from
``configsvc`` or ``strong``); ``tests/test_purity.py`` enforces it. The
runtime that drives it (loop, disk, transport) is ``configsvc.runtime``.
How it works: ``docs/eventual.md``. The public surface of the replica core
is re-exported here (``tests/test_eventual_api.py`` pins it); SWIM
membership lives in ``eventual.membership``.
"""

from eventual.codec import MalformedMessage, decode, encode
from eventual.config import LWW, MVR, Merge, PlantedBugs, RandomSource, ReplicaConfig
from eventual.context import CausalContext
from eventual.instances import InstanceInfo, InstanceView
from eventual.lww import LWWRegister
from eventual.messages import Deltas, Digest, Envelope, Event, FullState, Message, RepairProbe
from eventual.mvr import MVRegister
from eventual.ormap import ORMap
from eventual.ready import EventualStatus, Ready
from eventual.records import (
    EventRecord,
    IdentityRecord,
    IndexRecord,
    Record,
    SnapshotRecord,
    record_fields,
    record_from_fields,
)
from eventual.replica import Replica
from eventual.requests import (
    BadRequest,
    CausallyBehind,
    Delete,
    Deregister,
    Get,
    Heartbeat,
    Instances,
    InstancesResult,
    List,
    ListResult,
    NotFound,
    Put,
    ReadResult,
    Register,
    Reply,
    Request,
    Result,
    SiblingView,
    WriteResult,
)
from eventual.storage import DurableState, Storage, recover
from eventual.token import BadToken, decode_vv, encode_vv

__all__ = [
    "LWW",
    "MVR",
    "BadRequest",
    "BadToken",
    "CausalContext",
    "CausallyBehind",
    "Delete",
    "Deltas",
    "Deregister",
    "Digest",
    "DurableState",
    "Envelope",
    "Event",
    "EventRecord",
    "EventualStatus",
    "FullState",
    "Get",
    "Heartbeat",
    "IdentityRecord",
    "IndexRecord",
    "InstanceInfo",
    "InstanceView",
    "Instances",
    "InstancesResult",
    "LWWRegister",
    "List",
    "ListResult",
    "MVRegister",
    "MalformedMessage",
    "Merge",
    "Message",
    "NotFound",
    "ORMap",
    "PlantedBugs",
    "Put",
    "RandomSource",
    "ReadResult",
    "Ready",
    "Record",
    "Register",
    "RepairProbe",
    "Replica",
    "ReplicaConfig",
    "Reply",
    "Request",
    "Result",
    "SiblingView",
    "SnapshotRecord",
    "Storage",
    "WriteResult",
    "decode",
    "decode_vv",
    "encode",
    "encode_vv",
    "record_fields",
    "record_from_fields",
    "recover",
]
