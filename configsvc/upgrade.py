"""Version-gated state-machine upgrades: which versions each node supports, and when
the strong group may move to a newer one.

A binary applies the strong log under a range of state-machine versions
(``strong.state_machine.SUPPORTED_VERSIONS``); the group's *active* version is
part of the replicated state and changes only when a ``SetVersion(v)`` command
applies (``strong.state_machine`` rule 4). This module decides when the leader
may propose one.

Rules (each one is what a safe rolling upgrade rests on):

1. Reports. Every node sends its supported range ``(lo, hi)`` to every peer on the
   ``upgrade`` channel every ``REPORT_INTERVAL`` seconds (peer links are
   authenticated by the transport). A report describes the process that sent it.
   Reports live only in memory: a restarted node reports again within one interval.
2. The gate. The leader proposes ``SetVersion(v)`` only when ``v`` is above the
   active version, at most the configured target (``state_machine.version``), and
   inside the range of *every current voter*, itself included, as reported within
   the last ``FRESH`` seconds. It proposes the highest such ``v`` (a jump applies
   every migration in between, in order). A voter that is down or silent blocks the
   upgrade: its binary is unknown.
3. The backstop. A node whose binary does not support a version the log (or a
   snapshot) switches to stops applying with the reason
   (``UnsupportedVersion`` -> the driver halts, health ``unavailable``) instead of
   applying under rules it does not have. This covers the one race rule 2 cannot:
   a node that reported support and then restarted with an older binary before
   the leader heard its new report. Nothing diverges; upgrading that node's
   binary again lets it continue (its log and snapshot are intact).
4. Capping. ``$CONFIGSVC_STATE_MACHINE_MAX_VERSION`` caps this node's range (and
   what it reports). It exists to emulate an older binary in tests and to pin a
   node during an upgrade (a node capped below a version never votes it in).

Why peer reports and not commands in the log: a report carried by the log would
itself be applied by state machines of different versions, and the state it
records must not diverge between them; a report also describes a process (which
may be replaced at any time), not the replicated state. The leader needs only a
fresh view, and the backstop (rule 3) makes a stale view safe.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from strong.state_machine import INITIAL_VERSION, SUPPORTED_VERSIONS

log = logging.getLogger("configsvc.upgrade")

__all__ = [
    "CHANNEL",
    "FRESH",
    "MAX_VERSION_ENV",
    "REPORT_INTERVAL",
    "MalformedReport",
    "Support",
    "SupportTable",
    "decode_report",
    "encode_report",
    "report_forever",
    "supported_versions",
]

#: the transport channel of support reports
CHANNEL = "upgrade"
#: seconds between two reports of one node
REPORT_INTERVAL = 0.5
#: a report older than this (receiver's clock) no longer counts (rule 2)
FRESH = 5.0
#: caps this node's supported range (rule 4; tests and pinning only)
MAX_VERSION_ENV = "CONFIGSVC_STATE_MACHINE_MAX_VERSION"


class MalformedReport(ValueError):
    """A support report that does not decode."""


def supported_versions(environ: dict[str, str] | None = None) -> range:
    """This binary's range, capped by ``$CONFIGSVC_STATE_MACHINE_MAX_VERSION`` if set.

    Raises ``ValueError`` for a cap that is not an integer in the binary's range."""
    env = os.environ if environ is None else environ
    raw = env.get(MAX_VERSION_ENV, "").strip()
    if not raw:
        return SUPPORTED_VERSIONS
    try:
        cap = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_VERSION_ENV}={raw!r} is not an integer") from None
    if cap not in SUPPORTED_VERSIONS:
        raise ValueError(f"{MAX_VERSION_ENV}={cap} is outside this binary's versions "
                         f"{SUPPORTED_VERSIONS.start}..{SUPPORTED_VERSIONS.stop - 1}")
    return range(SUPPORTED_VERSIONS.start, cap + 1)


@dataclass(frozen=True)
class Support:
    """One node's reported range, and when (receiver's monotonic clock) it arrived."""

    lo: int
    hi: int
    at: float

    def covers(self, version: int) -> bool:
        return self.lo <= version <= self.hi


def encode_report(node: str, versions: range) -> bytes:
    return msgpack.packb([node, versions.start, versions.stop - 1])


def decode_report(payload: bytes) -> tuple[str, int, int]:
    """``(node, lo, hi)``; raises ``MalformedReport``."""
    try:
        node, lo, hi = msgpack.unpackb(payload)
    except Exception as exc:  # msgpack raises many types; every one means garbage
        raise MalformedReport(f"undecodable support report: {exc}") from None
    if not isinstance(node, str) or not node:
        raise MalformedReport("a support report names no node")
    if type(lo) is not int or type(hi) is not int or not INITIAL_VERSION <= lo <= hi < 2**32:
        raise MalformedReport(f"a support report has no valid range: {lo!r}..{hi!r}")
    return node, lo, hi


class SupportTable:
    """The latest report of each node (rule 1) and the gate over them (rule 2)."""

    def __init__(self, node: str, versions: range) -> None:
        self.node = node
        self.versions = versions
        self._reports: dict[str, Support] = {}

    def record(self, src: str, node: str, lo: int, hi: int, now: float) -> bool:
        """Take a report; False (ignored) if ``src``, the authenticated sender, is not
        the node it names."""
        if src != node:
            return False
        self._reports[node] = Support(lo, hi, now)
        return True

    def support(self, node: str, now: float) -> Support | None:
        """``node``'s fresh range (this node's own range always), or None."""
        if node == self.node:
            return Support(self.versions.start, self.versions.stop - 1, now)
        report = self._reports.get(node)
        if report is None or now - report.at > FRESH:
            return None
        return report

    def next_version(self, active: int, target: int, voters: tuple[str, ...],
                     now: float) -> int | None:
        """The version the leader may switch the group to now (rule 2), or None."""
        ranges = [self.support(v, now) for v in voters]
        if any(r is None for r in ranges):
            return None
        common = min(min(r.hi for r in ranges if r is not None), target)
        if common <= active or any(r is not None and not r.covers(common) for r in ranges):
            return None
        return common

    def waiting_for(self, version: int, voters: tuple[str, ...], now: float) -> list[str]:
        """The voters without a fresh report covering ``version`` (what blocks it)."""
        waiting = []
        for v in voters:
            r = self.support(v, now)
            if r is None or not r.covers(version):
                waiting.append(v)
        return waiting

    def deliver(self, src: str, payload: bytes, now: float) -> None:
        """A peer's report from the transport; a malformed one is logged and dropped."""
        try:
            node, lo, hi = decode_report(payload)
        except MalformedReport as exc:
            log.warning("dropped a support report from %s: %s", src, exc)
            return
        if not self.record(src, node, lo, hi, now):
            log.warning("dropped a support report from %s naming %s", src, node)

    def status(self, active: int, target: int, voters: tuple[str, ...],
               now: float) -> dict[str, Any]:
        """What ``configsvc upgrade status`` shows: each voter's range, the active
        and target versions, the next switch and what blocks it."""
        nodes: dict[str, Any] = {}
        for v in voters:
            r = self.support(v, now)
            nodes[v] = (None if r is None else
                        {"supported": [r.lo, r.hi], "report_age_s": round(now - r.at, 1)})
        following = self.next_version(active, target, voters, now)
        blocked = [] if active >= target else self.waiting_for(target, voters, now)
        return {"node": self.node, "active_version": active, "target_version": target,
                "nodes": nodes, "next_version": following, "waiting_for": blocked}


async def report_forever(node: str, versions: range, peers: list[str],
                         send: Callable[[str, bytes], object]) -> None:
    """Rule 1: send this node's range to every peer, every ``REPORT_INTERVAL``."""
    payload = encode_report(node, versions)
    while True:
        for peer in peers:
            send(peer, payload)
        await asyncio.sleep(REPORT_INTERVAL)  # period of a background task, not a test wait
