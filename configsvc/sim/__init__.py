"""Deterministic simulator: seeded faults over the pure cores, checkers kept apart."""
