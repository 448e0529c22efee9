"""HTTP health checks, run by the node each instance registered with.

Rules:

1. A node checks exactly the instances whose ``node`` is itself, as its own
   replica of each store holds them: after a restart it finds them again, and an
   instance is never checked by two nodes (a registration forwarded to the leader
   keeps the node it arrived at).
2. Consul's verdict: ``GET`` the URL; a 2xx answer is ``passing``, 429 is
   ``warning``, anything else, or no answer within the timeout, ``critical``.
3. A result is written (``Discovery.check``) only when it differs from what the
   store holds, or as the TTL heartbeat (every third of the TTL): a steady
   instance costs one small write per TTL/3, not one per interval.
4. A report that fails (no quorum, a leader change, a partition) is tried again
   at the next interval; a check never stops because a write failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from configsvc.discovery_types import MAX_OUTPUT, HttpCheck
from configsvc.http.discovery import Discovery
from configsvc.http.errors import ApiError
from configsvc.http.forwarding import Forwarder
from eventual.dots import SVC_SPACE
from eventual.instances import resolve_instance
from strong.ops import ListInstances
from strong.results import InstancesResult

if TYPE_CHECKING:
    from configsvc.node import Node

log = logging.getLogger("configsvc.http.health_checks")

Key = tuple[str, str, str]


@dataclass(frozen=True)
class Target:
    """One instance this node checks, with the status and output its store holds."""

    ns: str
    service: str
    instance_id: str
    check: HttpCheck
    #: seconds; None: no TTL, so no heartbeat is due between changes
    ttl: float | None
    status: str
    output: str

    @property
    def key(self) -> Key:
        return self.ns, self.service, self.instance_id


def verdict(status_code: int) -> str:
    """Consul's rule for an HTTP check's answer."""
    if 200 <= status_code < 300:
        return "passing"
    return "warning" if status_code == 429 else "critical"


class HealthChecks:
    """Started and stopped by the node; scans its replicas every ``rescan_interval``."""

    def __init__(self, node: Node, forwarder: Forwarder | None = None, *,
                 rescan_interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.node = node
        self.discovery = Discovery(node, forwarder)
        self.rescan_interval = rescan_interval
        self.clock = clock
        self._running: dict[Key, tuple[Target, asyncio.Task[None]]] = {}
        #: what the stores held at the last scan, and when that scan was
        self._stored: dict[Key, Target] = {}
        self._scanned_at = 0.0
        self._scanner: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        # A fresh connection per check (as Consul's checks): a reused one would test the pool.
        self._http = httpx.AsyncClient(follow_redirects=True,
                                       limits=httpx.Limits(max_keepalive_connections=0))
        self._scanner = asyncio.create_task(self._scan_loop(), name=f"health-checks-{self.node.id}")

    async def close(self) -> None:
        tasks = [t for _, t in self._running.values()]
        if self._scanner is not None:
            tasks.append(self._scanner)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._running.clear()
        if self._http is not None:
            await self._http.aclose()

    @property
    def checking(self) -> list[Key]:
        """The instances this node is checking now."""
        return sorted(self._running)

    # ------------------------------------------------------------------ finding the instances

    def targets(self) -> dict[Key, Target]:
        """Every HTTP-checked instance registered with this node, from its replicas (rule 1)."""
        found: dict[Key, Target] = {}
        for info in self.node.strong.sm.namespaces():
            if info.consistency == "strong":
                result = self.node.strong.read_stale(ListInstances(info.name, ""))
                if not isinstance(result, InstancesResult):
                    continue
                for r in result.instances:
                    check = HttpCheck.decode(r.check)
                    if r.node == self.node.id and check is not None:
                        t = Target(info.name, r.service, r.instance_id, check,
                                   r.ttl_ms / 1000 or None, r.status, r.output)
                        found[t.key] = t
            else:
                found.update(self._eventual_targets(info.name))
        return found

    def _eventual_targets(self, ns: str) -> dict[Key, Target]:
        found: dict[Key, Target] = {}
        for key, siblings in self.node.eventual.replica.store.entries.items():
            if key[0] != ns or key[1] != SVC_SPACE:
                continue
            current = resolve_instance(siblings)
            if current is None:
                continue
            info = current[0]
            check = HttpCheck.decode(info.check)
            if info.node == self.node.id and check is not None:
                service, _, instance_id = key[2].partition("/")
                t = Target(ns, service, instance_id, check, info.ttl or None, info.status, info.output)
                found[t.key] = t
        return found

    async def _scan_loop(self) -> None:
        while True:
            if not self.node.corrupt and not self.node.strong.halted:
                try:
                    self._reconcile(self.targets())
                except Exception:  # a bad record must not stop every check
                    log.exception("scanning for health checks failed")
            await asyncio.sleep(self.rescan_interval)  # period of a background task

    def _reconcile(self, targets: dict[Key, Target]) -> None:
        self._stored, self._scanned_at = targets, self.clock()
        for key, (target, task) in list(self._running.items()):
            new = targets.get(key)
            if new is None or (new.check, new.ttl) != (target.check, target.ttl) or task.done():
                task.cancel()
                del self._running[key]
        for key, target in targets.items():
            if key not in self._running:
                task = asyncio.create_task(self._run(target), name=f"check-{'/'.join(key)}")
                self._running[key] = (target, task)

    # ------------------------------------------------------------------ checking

    async def probe(self, check: HttpCheck) -> tuple[str, str]:
        """(status, output) of one ``GET``; the timeout bounds the whole exchange."""
        assert self._http is not None
        what = f"HTTP GET {check.http}"
        try:
            async with asyncio.timeout(check.timeout), self._http.stream("GET", check.http) as r:
                return verdict(r.status_code), f"{what}: {r.status_code} {r.reason_phrase}"
        except TimeoutError:
            return "critical", f"{what}: no answer within {check.timeout:g}s"
        except httpx.HTTPError as exc:
            return "critical", f"{what}: {type(exc).__name__}: {exc}"[:MAX_OUTPUT]

    async def _run(self, target: Target) -> None:
        reported: tuple[str, str] | None = None
        reported_at: float | None = None
        while True:
            result = await self.probe(target.check)
            now = self.clock()
            stored = self._stored.get(target.key, target)
            # Rule 3: what the store holds, unless our own report is newer than the scan.
            held = reported if reported_at is not None and reported_at >= self._scanned_at \
                else (stored.status, stored.output)
            due = target.ttl is not None and (reported_at is None or now - reported_at >= target.ttl / 3)
            if result != held or due:
                try:
                    await self.discovery.check(None, target.ns, target.service, target.instance_id, *result)
                    reported, reported_at = result, now
                except ApiError as exc:  # rule 4
                    if exc.code == "instance_not_found":
                        return  # deregistered meanwhile; the next scan agrees
                    log.info("check of %s not reported: %s", "/".join(target.key), exc.message)
            await asyncio.sleep(target.check.interval)  # the check's own period
