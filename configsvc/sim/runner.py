"""Runs many seeds of one simulation and reports them the same way for every store.

A simulation is a function ``run_seed(seed) -> SeedResult``. A failing seed
carries a human-readable violation and the smallest history excerpt that shows
it; the runner prints ``reproduce: configsvc sim <store> --seed S`` for it.

Seeds are independent, so they run in parallel worker processes, one per
available core (``CONFIGSVC_SIM_JOBS`` overrides; 1 runs them in this
process). Results are reported in seed order whatever the number of workers,
so the output is the same.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass
class SeedResult:
    seed: int
    ok: bool
    #: client operations issued (completed or not)
    ops: int = 0
    #: operations the checkers examined
    ops_checked: int = 0
    violation: str = ""
    excerpt: list[str] = field(default_factory=list)
    #: extra per-store measurements (e.g. worst convergence time)
    stats: dict[str, float] = field(default_factory=dict)
    #: the seed's drawn configuration (swarm testing), printed with its replay line
    config: str = ""


@dataclass
class Summary:
    store: str
    seeds: int = 0
    failures: int = 0
    ops: int = 0
    ops_checked: int = 0
    wall_seconds: float = 0.0
    failed_seeds: list[int] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "seeds": self.seeds,
            "failures": self.failures,
            "failed_seeds": self.failed_seeds,
            "ops": self.ops,
            "ops_checked": self.ops_checked,
            "ops_per_s": round(self.ops_per_s, 1),
            "wall_seconds": round(self.wall_seconds, 3),
            **{k: round(v, 4) for k, v in sorted(self.stats.items())},
        }


#: how per-seed stats combine into the summary: "max" or "sum"
StatFold = dict[str, str]

#: the simulation a worker process runs (inherited through fork, never pickled)
_worker_run_seed: Callable[[int], SeedResult] | None = None


def default_jobs() -> int:
    """Worker processes to use: ``CONFIGSVC_SIM_JOBS`` if set, else one per usable core."""
    configured = os.environ.get("CONFIGSVC_SIM_JOBS")
    if configured:
        return max(1, int(configured))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _run_in_worker(seed: int) -> SeedResult:
    assert _worker_run_seed is not None
    return _worker_run_seed(seed)


def _results(run_seed: Callable[[int], SeedResult], seeds: list[int], jobs: int) -> Iterator[SeedResult]:
    """Each seed's result, in seed order."""
    jobs = min(jobs, len(seeds))
    if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield from map(run_seed, seeds)
        return
    global _worker_run_seed
    _worker_run_seed = run_seed
    try:
        # gc.freeze: what a worker inherits (modules, code) is never garbage;
        # keeping it out of every collection saves the simulation ~5%. A worker
        # that dies breaks the pool (an error, never a hang).
        with ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("fork"), initializer=gc.freeze
        ) as pool:
            yield from pool.map(_run_in_worker, seeds)
    finally:
        _worker_run_seed = None


def run_seeds(
    store: str,
    run_seed: Callable[[int], SeedResult],
    seeds: list[int],
    out: TextIO = sys.stdout,
    as_json: bool = False,
    fold: StatFold | None = None,
    jobs: int | None = None,
) -> Summary:
    fold = fold or {}
    summary = Summary(store)
    started = time.perf_counter()
    results = _results(run_seed, seeds, default_jobs() if jobs is None else jobs)
    for seed, result in zip(seeds, results, strict=True):
        summary.seeds += 1
        summary.ops += result.ops
        summary.ops_checked += result.ops_checked
        for key, value in result.stats.items():
            if fold.get(key, "max") == "sum":
                summary.stats[key] = summary.stats.get(key, 0.0) + value
            else:
                summary.stats[key] = max(summary.stats.get(key, value), value)
        if not result.ok:
            summary.failures += 1
            summary.failed_seeds.append(seed)
            print(f"FAIL seed={seed}: {result.violation}", file=out)
            for line in result.excerpt:
                print(f"    {line}", file=out)
            if result.config:
                print(f"    config: {result.config}", file=out)
            print(f"reproduce: configsvc sim {store} --seed {seed}", file=out)
    summary.wall_seconds = time.perf_counter() - started
    print(
        f"{store}: seeds={summary.seeds} failures={summary.failures} ops={summary.ops} "
        f"checked={summary.ops_checked} ops/s={summary.ops_per_s:,.0f} "
        f"wall={summary.wall_seconds:.1f}s"
        + "".join(f" {k}={v:.3f}" for k, v in sorted(summary.stats.items())),
        file=out,
    )
    if as_json:
        print(json.dumps(summary.as_json()), file=out)
    return summary
