"""Strong store: a sans-IO Multi-Paxos replica, a deterministic state machine, storage.

Pure modules (no IO, no clock, no global randomness) are everything except
``storage*.py`` and ``driver*.py``; ``tests/test_purity.py`` enforces it.
"""
