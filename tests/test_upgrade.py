"""The upgrade gate (``configsvc.upgrade`` rules 1, 2 and 4), unit by unit."""

from __future__ import annotations

import pytest

from configsvc.upgrade import (
    FRESH,
    MAX_VERSION_ENV,
    MalformedReport,
    SupportTable,
    decode_report,
    encode_report,
    supported_versions,
)
from strong.state_machine import SUPPORTED_VERSIONS

VOTERS = ("n1", "n2", "n3")


def table(versions: range = range(1, 6)) -> SupportTable:
    return SupportTable("n1", versions)


def test_no_switch_until_every_voter_reports_support() -> None:
    t = table()
    assert t.next_version(3, 5, VOTERS, 0.0) is None  # n2, n3 unknown
    t.record("n2", "n2", 1, 5, 0.0)
    assert t.next_version(3, 5, VOTERS, 0.0) is None
    assert t.waiting_for(5, VOTERS, 0.0) == ["n3"]
    t.record("n3", "n3", 1, 3, 0.0)  # an old binary
    assert t.next_version(3, 5, VOTERS, 0.0) is None
    t.record("n3", "n3", 1, 5, 1.0)  # upgraded
    assert t.next_version(3, 5, VOTERS, 1.0) == 5
    assert t.next_version(5, 5, VOTERS, 1.0) is None  # already there
    assert t.next_version(3, 4, VOTERS, 1.0) == 4  # never past the target


def test_the_leader_counts_its_own_range() -> None:
    t = table(range(1, 4))
    t.record("n2", "n2", 1, 5, 0.0)
    t.record("n3", "n3", 1, 5, 0.0)
    assert t.next_version(3, 5, VOTERS, 0.0) is None
    assert t.waiting_for(5, VOTERS, 0.0) == ["n1"]


def test_the_highest_common_version_is_proposed_only_if_every_range_covers_it() -> None:
    t = table()
    t.record("n2", "n2", 1, 4, 0.0)
    t.record("n3", "n3", 4, 5, 0.0)
    assert t.next_version(3, 5, VOTERS, 0.0) == 4
    t.record("n3", "n3", 5, 5, 0.0)  # supports nothing n2 does
    assert t.next_version(3, 5, VOTERS, 0.0) is None


def test_a_stale_report_no_longer_counts() -> None:
    t = table()
    t.record("n2", "n2", 1, 5, 0.0)
    t.record("n3", "n3", 1, 5, 0.0)
    assert t.next_version(3, 5, VOTERS, FRESH) == 5
    assert t.next_version(3, 5, VOTERS, FRESH + 0.1) is None


def test_a_report_counts_only_from_the_node_it_names() -> None:
    t = table()
    assert not t.record("n2", "n3", 1, 5, 0.0)
    assert t.support("n3", 0.0) is None


def test_reports_round_trip_and_garbage_is_refused() -> None:
    assert decode_report(encode_report("n2", range(1, 6))) == ("n2", 1, 5)
    for bad in (b"", b"\xc1", encode_report("n2", range(1, 6))[:-1], b"\x93\xa0\x01\x05",
                b"\x93\xa2n2\x05\x01", b"\x93\xa2n2\xc3\x05", b"\x92\xa2n2\x01"):
        with pytest.raises(MalformedReport):
            decode_report(bad)
    t = table()
    t.deliver("n2", b"\xc1garbage", 0.0)  # logged and dropped, never raised
    assert t.support("n2", 0.0) is None


def test_the_cap_narrows_the_range_and_a_bad_cap_is_an_error() -> None:
    assert supported_versions({}) == SUPPORTED_VERSIONS
    assert supported_versions({MAX_VERSION_ENV: "3"}) == range(1, 4)
    for bad in ("x", "0", str(SUPPORTED_VERSIONS.stop)):
        with pytest.raises(ValueError, match=MAX_VERSION_ENV):
            supported_versions({MAX_VERSION_ENV: bad})


def test_status_names_what_blocks_the_target() -> None:
    t = table()
    t.record("n2", "n2", 1, 3, 0.0)
    status = t.status(3, 5, VOTERS, 1.0)
    assert status["nodes"]["n2"] == {"supported": [1, 3], "report_age_s": 1.0}
    assert status["nodes"]["n3"] is None
    assert status["next_version"] is None and status["waiting_for"] == ["n2", "n3"]
