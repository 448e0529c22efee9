"""Strong store: a sans-IO Multi-Paxos replica, a deterministic state machine, storage.

Every module is pure (no IO, no clock, no global randomness, nothing from
``configsvc`` or ``eventual``); ``tests/test_purity.py`` enforces it. The
runtime that drives it (loop, disk, transport) is ``configsvc.runtime``.
"""
