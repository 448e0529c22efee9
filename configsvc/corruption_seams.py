"""Test seams that make one node's state diverge in memory, as a flipped bit would.

Never set in production; a node with one set logs it loudly. Each exists so a test
can show that a divergence is caught and repaired (a checker that cannot fail is
a defect):

- ``CONFIGSVC_TEST_CORRUPT_KEY=ns/key``: once the strong key exists, its value in
  this node's state machine is altered (one bit), its log left intact. The
  cross-replica hash checks catch it (``configsvc.hash_checks``).
- ``CONFIGSVC_TEST_CORRUPT_EVENTUAL=ns/key``: once the eventual key was
  overwritten by this node (its current sibling has counter ``c >= 2`` and the
  context holds ``c - 1``), the overwritten value comes back as a stray sibling
  under its old dot: equal version vectors, different states. The periodic
  repair probe catches it and the push-pull full-state exchange repairs it
  (``eventual.replica``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from functools import partial

from configsvc.runtime.eventual_driver import EventualDriver
from configsvc.runtime.strong_driver import StrongDriver
from eventual.dots import KV_SPACE, Sibling
from eventual.ormap import sibling_hash
from strong.kv import KVTable

__all__ = ["CORRUPT_EVENTUAL_ENV", "CORRUPT_KEY_ENV", "corrupt_when_present"]

log = logging.getLogger("configsvc.corruption_seams")

CORRUPT_KEY_ENV = "CONFIGSVC_TEST_CORRUPT_KEY"
CORRUPT_EVENTUAL_ENV = "CONFIGSVC_TEST_CORRUPT_EVENTUAL"


def corrupt_strong(strong: StrongDriver, spec: str) -> bool:
    """Flip one bit of ``ns/key``'s value in the state machine; True once done."""
    ns, _, key = spec.partition("/")
    table = strong.sm._tables.get(ns)  # a test seam reaches inside on purpose
    if not isinstance(table, KVTable):
        return False
    kv = table.get(key.encode())
    if kv is None or not kv.value:
        return False
    table.set(replace(kv, value=bytes([kv.value[0] ^ 1]) + kv.value[1:]))
    strong.sm._snapshot = None
    return True


def corrupt_eventual(eventual: EventualDriver, spec: str) -> bool:
    """Bring an overwritten value of ``ns/key`` back under its old dot; True once done."""
    ns, _, key = spec.partition("/")
    replica = eventual.replica
    full = (ns, KV_SPACE, key)
    sibs = replica.store.entries.get(full)
    if not sibs:
        return False
    (actor, counter), _ = next(iter(sibs.items()))
    old = (actor, counter - 1)
    if counter < 2 or not replica.store.context.contains(old) or old in sibs:
        return False
    stray = Sibling(b"resurrected", 0)
    sibs[old] = stray
    replica.state_hash ^= sibling_hash(full, old, stray)
    return True


async def corrupt_when_present(strong: StrongDriver, eventual: EventualDriver) -> None:
    """Run the seams named in the environment, each once, when its key is there."""
    seams: list[tuple[str, Callable[[str], bool]]] = [
        (CORRUPT_KEY_ENV, partial(corrupt_strong, strong)),
        (CORRUPT_EVENTUAL_ENV, partial(corrupt_eventual, eventual)),
    ]
    pending = [(env, fn, os.environ.get(env, "")) for env, fn in seams if os.environ.get(env)]
    for env, _, spec in pending:
        log.warning("TEST SEAM ACTIVE: %s=%s", env, spec)
    while pending:
        for seam in list(pending):
            env, fn, spec = seam
            if fn(spec):
                log.warning("TEST SEAM: altered %s in memory", spec)
                pending.remove(seam)
        await asyncio.sleep(0.05)  # period of a background task, not a test wait
