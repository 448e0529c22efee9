"""The node's side of cross-replica hash checks (``strong.hash_check``).

- While leader, the node proposes ``HashCheck(id)`` every
  ``state_machine.hash_check_interval`` seconds (0 turns checks off).
- After applying a check, every node proposes its ``HashReport`` (a follower's
  proposal goes to the leader like any write).
- When a verdict says this node's state differs from the majority's, the node
  stops serving (every API answers ``503`` with the reason), asks the driver to
  re-sync from a node that agreed (``StrongDriver.resync``; ``strong.replica``
  rule 16), and serves again once the peer's snapshot replaced its state machine.
  The next check confirms the repair.
- Every node names disagreeing replicas in health (``replicas disagree at index
  N``), since the verdict and the reports are in everyone's log.

Tests make a replica diverge through ``configsvc.corruption_seams``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from configsvc.runtime.strong_driver import Halted, NotLeader, OutcomeUnknown, StrongDriver
from strong.commands import Command, encode_command
from strong.hash_check import Check, HashChecks, Verdict
from strong.ops import HashCheck, HashReport
from strong.ready import Role

__all__ = ["HashCheckRunner"]

log = logging.getLogger("configsvc.hash_checks")

class HashCheckRunner:
    def __init__(self, node_id: str, strong: StrongDriver, interval: float,
                 request_timeout: float) -> None:
        self.id = node_id
        self.strong = strong
        self.interval = interval
        self.timeout = request_timeout
        # The voters of the configuration governing a check's slot (the log below it).
        self.checks = HashChecks(
            node_id, lambda slot: strong.replica.member_log.at(slot - 1).voters)
        #: why this node does not serve, while its state is being re-synced
        self.diverged: str | None = None
        #: times this node found its state diverged and re-synced it
        self.repairs = 0
        #: the latest disagreement any replica showed (health reason)
        self.disagreement: str | None = None
        self._reports: asyncio.Queue[bytes] = asyncio.Queue()
        strong.on_hash_events = self._on_events

    # ------------------------------------------------------------------ the loop's side

    def _on_events(self, events: list[tuple[int, int, str, bytes]]) -> None:
        """Called by the driver after a slot applied (in the loop task): never blocks."""
        for slot, check_id, node, digest in events:
            check = self.checks.observe(slot, check_id, node, digest)
            if check is None:
                continue
            if not node:
                self._report(check)
                continue
            verdict = self.checks.verdict(check)
            if verdict is not None:
                self._judge(check, verdict)

    def _report(self, check: Check) -> None:
        cmd = Command(f"hash-{self.id}-{check.check_id}", 0,
                      HashReport(check.check_id, self.id, check.own))
        self._reports.put_nowait(encode_command(cmd))

    def _judge(self, check: Check, verdict: Verdict) -> None:
        if verdict.disagreed:
            self.disagreement = (f"replicas disagree at index {verdict.index}: "
                                 f"{', '.join(verdict.disagreed)} differ from the majority")
        elif self.disagreement is not None and self.diverged is None:
            self.disagreement = None  # a later check found every replica agreeing
        if check.own == verdict.digest or self.diverged is not None:
            return
        peers = [n for n in verdict.agreed if n != self.id]
        if not peers:
            return
        self.diverged = (f"refusing to serve: replicas disagree at index {verdict.index}; this "
                         f"node's state differs from the majority's and is being re-synced "
                         f"from {peers[0]}")
        log.error("%s", self.diverged)
        self.repairs += 1
        self.strong.resync(peers[0])

    # ------------------------------------------------------------------ tasks

    async def run(self) -> None:
        """Propose checks while leader, reports always; clear ``diverged`` once re-synced."""
        tasks = [asyncio.create_task(self._propose_checks()),
                 asyncio.create_task(self._send_reports())]
        try:
            while True:
                if self.diverged is not None and not self.strong.resyncing:
                    log.warning("state re-synced from a peer's snapshot; serving again")
                    self.diverged = None
                await asyncio.sleep(0.05)  # period of a background task, not a test wait
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _propose_checks(self) -> None:
        if self.interval <= 0:
            return
        while True:
            await asyncio.sleep(self.interval)  # period of a background task, not a test wait
            if self.strong.replica.role is not Role.LEADER or self.strong.halted:
                continue
            check_id = time.time_ns() // 1000  # unique enough; a duplicate id is ignored
            cmd = encode_command(Command(f"hash-check-{self.id}", 0, HashCheck(check_id)))
            with contextlib.suppress(NotLeader, OutcomeUnknown, Halted, TimeoutError):
                await self.strong.propose(cmd, self.timeout)

    async def _send_reports(self) -> None:
        while True:
            report = await self._reports.get()
            for _ in range(3):  # a leader change may refuse it; the next check comes anyway
                try:
                    await self.strong.propose(report, self.timeout)
                    break
                except (NotLeader, OutcomeUnknown, TimeoutError):
                    await asyncio.sleep(0.2)  # retry pause of a background task
                except Halted:
                    return

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        latest = self.checks.latest()
        return {
            "last_verdict_index": None if latest is None else latest.index,
            "disagreeing": [] if latest is None else list(latest.disagreed),
            "pending_checks": len(self.checks.pending()),
            "diverged": self.diverged,
            "repairs": self.repairs,
        }
