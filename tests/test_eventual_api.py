"""The eventual core's public surface is declared, and stays what callers use."""

from __future__ import annotations

import eventual

EXPECTED = {
    # the replica and what it is given / gives back
    "Replica", "ReplicaConfig", "PlantedBugs", "RandomSource", "Ready", "Reply",
    "EventualStatus", "Merge", "MVR", "LWW",
    # client requests and results
    "Get", "Put", "Delete", "List", "Register", "Heartbeat", "Deregister", "Instances",
    "Request", "Result", "ReadResult", "ListResult", "WriteResult", "InstancesResult",
    "CausallyBehind", "NotFound", "BadRequest", "SiblingView", "InstanceInfo", "InstanceView",
    # peer messages and their wire format
    "Message", "Envelope", "Event", "Digest", "Deltas", "FullState", "RepairProbe",
    "encode", "decode", "MalformedMessage",
    # session tokens
    "encode_vv", "decode_vv", "BadToken",
    # durability
    "Record", "IdentityRecord", "EventRecord", "SnapshotRecord", "IndexRecord", "record_fields",
    "record_from_fields", "DurableState", "Storage", "recover",
    # the CRDTs
    "CausalContext", "MVRegister", "ORMap", "LWWRegister",
}


def test_the_public_surface_is_exactly_the_declared_one() -> None:
    assert set(eventual.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(eventual, name) is not None


def test_errors_for_bad_input_are_value_errors() -> None:
    assert issubclass(eventual.MalformedMessage, ValueError)
    assert issubclass(eventual.BadToken, ValueError)
