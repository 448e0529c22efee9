"""Eventual store: a sans-IO causal+ gossip replica with CRDT merge.

Pure modules (no IO, no clock, no global randomness) are everything except
``storage*.py`` and ``driver*.py``; ``tests/test_purity.py`` enforces it.
"""
