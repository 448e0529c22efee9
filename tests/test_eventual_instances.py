"""Service instances in eventual namespaces: reported status, local health,
expiry, and self-preservation (``eventual.instances``, ``eventual.health``).

An instance shows what it reported (registration or last heartbeat: passing,
warning, critical, with the check's output) while this replica hears from it
within its TTL, and critical once it does not. One critical for longer than
``deregister_after`` is removed — except that silence removes nothing while a
replica is in self-preservation: when most of the instances it heard from go
silent at once, the likelier cause is its own network.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from configsvc.sim.eventual_net import Net
from eventual.codec import MalformedMessage, decode, encode, event_to_wire
from eventual.health import SelfPreservation, self_preservation
from eventual.instances import InstanceInfo, decode_info
from eventual.messages import Deltas, Event
from eventual.requests import (
    BadRequest,
    Heartbeat,
    Instances,
    InstancesResult,
    Register,
    WriteResult,
)

POLICY = SelfPreservation(fraction=0.5, window=5.0, min_instances=3, max_duration=20.0)
FULL = InstanceInfo(address="10.0.0.1", port=80, tags=("a",), meta=(("k", "v"),), ttl=2.0,
                    deregister_after=1.0, status="warning", output="slow", node="n2",
                    check=b'{"http": "http://10.0.0.1/health"}')


def listed(net: Net, node: str, service: str = "api") -> dict[str, str]:
    result = net.call(node, Instances("svc", service))
    assert isinstance(result, InstancesResult), result
    return {v.instance_id: v.status for v in result.instances}


def ok(net: Net, node: str, request: Register | Heartbeat) -> None:
    assert isinstance(net.call(node, request), WriteResult)


# ---------------------------------------------------------------------- records


def test_records_carry_status_output_node_and_check_and_round_trip() -> None:
    assert decode_info(FULL.encode()) == FULL
    zero_ttl = InstanceInfo(address="h", port=1, ttl=0.0)
    assert decode_info(zero_ttl.encode()) == zero_ttl


def test_an_old_six_item_record_decodes_and_a_default_record_is_still_six_items() -> None:
    old = msgpack.packb(["10.0.0.1", 80, ["a"], [["k", "v"]], 5.0, 60.0], use_bin_type=True)
    info = decode_info(old)
    assert (info.status, info.output, info.node, info.check) == ("passing", "", "", b"")
    assert info.encode() == old  # replicas that know only six items still read it
    assert len(msgpack.unpackb(FULL.encode())) == 10


@pytest.mark.parametrize("extra", [
    ["dead", "", "", b""],          # unknown status
    ["passing", 7, "", b""],        # output not a string
    ["passing", "", None, b""],     # node not a string
    ["passing", "", "", "json"],    # check not bytes
    ["passing", "x" * 5000, "", b""],  # output too long
    ["passing", "", "", b"x" * 5000],  # check too large
    ["passing", ""],                # neither 6 nor 10 items
])
def test_malformed_records_in_peer_messages_are_rejected_not_raised(extra: list[object]) -> None:
    value = msgpack.packb(["10.0.0.1", 80, [], [], 5.0, 60.0, *extra], use_bin_type=True)
    event = Event(("n2.x", 1), ("svc", "svc", "api/i1"), b"", 1, (), ())
    wire = ["E", "n2.x", [["n2.x", 1]], [[*event_to_wire(event)[:2], value, 1, [], []]]]
    with pytest.raises(MalformedMessage):
        decode(msgpack.packb(wire, use_bin_type=True))
    with pytest.raises(ValueError):
        decode_info(value)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=5),
                          st.binary(max_size=5), st.floats(allow_nan=True)), max_size=11))
def test_any_msgpack_list_is_a_record_or_a_value_error(items: list[object]) -> None:
    data = msgpack.packb(items, use_bin_type=True)
    try:
        info = decode_info(data)
    except ValueError:
        return
    assert decode_info(info.encode()) == info


def test_a_heartbeat_with_a_bad_status_is_refused() -> None:
    net = Net(["n1"])
    ok(net, "n1", Register("svc", "api", "i1", FULL))
    for bad in (Heartbeat("svc", "api", "i1", "dead"),  # type: ignore[arg-type]
                Heartbeat("svc", "api", "i1", "passing", "x" * 5000)):
        assert isinstance(net.call("n1", bad), BadRequest)


def test_wire_messages_with_full_records_round_trip() -> None:
    event = Event(("n2.x", 1), ("svc", "svc", "api/i1"), FULL.encode(), 1, (), ())
    msg = Deltas("n2.x", (("n2.x", 1),), (event,))
    assert decode(encode(msg)) == msg


# ---------------------------------------------------------------------- status


def test_an_instance_shows_its_reported_status_while_fresh_and_critical_once_silent() -> None:
    net = Net(["n1", "n2"])
    ok(net, "n1", Register("svc", "api", "i1", InstanceInfo(address="h", port=1, ttl=1.0,
                                                            deregister_after=0)))
    net.advance(0.3)
    assert listed(net, "n2") == {"i1": "passing"}
    ok(net, "n1", Heartbeat("svc", "api", "i1", "warning", "disk 91%"))
    net.advance(0.3)
    result = net.call("n2", Instances("svc", "api"))
    assert isinstance(result, InstancesResult)
    (view,) = result.instances
    assert (view.status, view.info.output) == ("warning", "disk 91%")
    net.advance(1.0)  # silent beyond its ttl, whatever it reported
    assert listed(net, "n2") == {"i1": "critical"}
    ok(net, "n2", Heartbeat("svc", "api", "i1", "passing"))
    assert listed(net, "n2") == {"i1": "passing"}


def test_an_instance_without_a_ttl_is_never_critical_by_silence() -> None:
    net = Net(["n1"])
    ok(net, "n1", Register("svc", "api", "i1", InstanceInfo(address="h", port=1, ttl=0,
                                                            deregister_after=1.0)))
    net.advance(10.0)
    assert listed(net, "n1") == {"i1": "passing"}


def test_an_instance_reporting_critical_is_removed_after_deregister_after() -> None:
    net = Net(["n1"])
    info = InstanceInfo(address="h", port=1, ttl=5.0, deregister_after=1.0)
    ok(net, "n1", Register("svc", "api", "i1", info))
    for _ in range(2):  # reports critical, and keeps heartbeating
        ok(net, "n1", Heartbeat("svc", "api", "i1", "critical", "connection refused"))
        net.advance(0.4)
    assert listed(net, "n1") == {"i1": "critical"}
    ok(net, "n1", Heartbeat("svc", "api", "i1", "critical", "connection refused"))
    net.advance(0.4)
    assert listed(net, "n1") == {}


# ---------------------------------------------------------------------- self-preservation


def test_the_rule_enters_when_most_recently_live_instances_lapse_at_once() -> None:
    fresh, lapsed, old = (0.5, 2.0), (3.0, 2.0), (60.0, 2.0)
    assert self_preservation(None, [lapsed, lapsed, fresh], 100.0, POLICY) == 100.0
    assert self_preservation(None, [lapsed, fresh, fresh], 100.0, POLICY) is None  # a third
    assert self_preservation(None, [lapsed, lapsed], 100.0, POLICY) is None  # too few
    # long-silent instances are not "recently live": they neither count nor trigger
    assert self_preservation(None, [old, old, old, lapsed, fresh, fresh], 100.0, POLICY) is None


def test_the_rule_leaves_when_heartbeats_resume_or_after_its_bound() -> None:
    lapsed, fresh = (3.0, 2.0), (0.5, 2.0)
    assert self_preservation(90.0, [lapsed, lapsed, fresh], 100.0, POLICY) == 90.0
    assert self_preservation(90.0, [lapsed, fresh, fresh], 100.0, POLICY) is None
    assert self_preservation(70.0, [lapsed, lapsed, fresh], 100.0, POLICY) is None  # 30 > 20
    # after the bound those instances are long silent: no re-entry for them
    later = [(40.0, 2.0), (40.0, 2.0), fresh]
    assert self_preservation(None, later, 110.0, POLICY) is None


def test_the_policy_is_validated() -> None:
    for bad in ({"fraction": 0.0}, {"fraction": 1.0}, {"window": 0.0}, {"min_instances": 0},
                {"window": 10.0, "max_duration": 5.0}):
        with pytest.raises(ValueError):
            SelfPreservation(**bad)  # type: ignore[arg-type]


def _cluster() -> Net:
    net = Net(["n1", "n2"], self_preservation=POLICY)
    info = InstanceInfo(address="h", port=1, ttl=1.0, deregister_after=1.0)
    for i in range(5):
        ok(net, "n2", Register("svc", "api", f"i{i}", info))
    net.advance(0.5)
    return net


def _beat(net: Net, ids: list[str], seconds: float) -> None:
    for _ in range(int(seconds / 0.5)):
        for iid in ids:
            ok(net, "n2", Heartbeat("svc", "api", iid))
        net.advance(0.5)


def test_a_node_cut_off_from_most_heartbeats_keeps_them_listed_as_critical() -> None:
    net = _cluster()
    net.isolate("n1")  # n1 hears no heartbeat any more: its own network is at fault
    _beat(net, [f"i{i}" for i in range(5)], 6.0)  # beyond ttl + deregister_after
    status = net.replicas["n1"].status(net.now).self_preservation
    assert status.active and status.held == 5 and status.silent == 5
    assert listed(net, "n1") == dict.fromkeys([f"i{i}" for i in range(5)], "critical")
    assert listed(net, "n2") == dict.fromkeys([f"i{i}" for i in range(5)], "passing")
    net.heal()
    _beat(net, [f"i{i}" for i in range(5)], 1.0)
    assert listed(net, "n1") == dict.fromkeys([f"i{i}" for i in range(5)], "passing")
    assert not net.replicas["n1"].status(net.now).self_preservation.active


def test_without_self_preservation_the_cut_off_node_would_delete_them_everywhere() -> None:
    # the control: the same cut under a policy that never triggers, and n1 removes all
    # five (removals that replicate after the heal): what self-preservation prevents
    net = Net(["n1", "n2"], self_preservation=SelfPreservation(min_instances=10**6))
    info = InstanceInfo(address="h", port=1, ttl=1.0, deregister_after=1.0)
    for i in range(5):
        ok(net, "n2", Register("svc", "api", f"i{i}", info))
    net.advance(0.5)
    net.isolate("n1")
    net.advance(3.0)
    assert listed(net, "n1") == {}


def test_a_single_dead_instance_is_still_removed_normally() -> None:
    net = _cluster()
    _beat(net, ["i0", "i1", "i2", "i3"], 4.0)  # i4 died
    assert not net.replicas["n1"].status(net.now).self_preservation.active
    assert set(listed(net, "n1")) == {"i0", "i1", "i2", "i3"}


def test_self_preservation_ends_after_its_bound_and_expiry_resumes() -> None:
    net = _cluster()
    net.isolate("n1")
    net.advance(10.0)
    assert net.replicas["n1"].status(net.now).self_preservation.active
    assert len(listed(net, "n1")) == 5
    net.advance(POLICY.max_duration)
    assert not net.replicas["n1"].status(net.now).self_preservation.active
    assert listed(net, "n1") == {}
