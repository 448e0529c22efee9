"""How strong is the eventual simulation? Each planted bug's catch rate over N seeds.

For every planted bug (``eventual.config.PlantedBugs``), and for no bug at all
(the control: the same seeds must all pass), run seeds ``start .. start+N-1``
of the default simulation (swarm testing on) and report how many fail and
which checker caught them. A checker that never fires, or a bug caught only
by a harness exception, shows here.

Run: ``python -m configsvc.sim.eventual_planted [--seeds 100] [--start 0]``
(``CONFIGSVC_SIM_JOBS`` sets the worker processes, as for ``configsvc sim``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import fields

from configsvc.sim.eventual_sim import EventualSimConfig, checker_of, run_seed
from configsvc.sim.runner import SeedResult, _results, default_jobs
from eventual.config import PlantedBugs

__all__ = ["measure"]


def _run(bug: str | None, seed: int) -> SeedResult:
    bugs = PlantedBugs(**{bug: True}) if bug else PlantedBugs()
    return run_seed(seed, EventualSimConfig(bugs=bugs))


def measure(bug: str | None, seeds: list[int], jobs: int) -> dict[str, object]:
    """One row: failing seeds, by checker, and the first failing seed."""
    started = time.perf_counter()
    by: Counter[str] = Counter()
    failing: list[int] = []
    for result in _results(lambda s: _run(bug, s), seeds, jobs):
        if not result.ok:
            by[checker_of(result)] += 1
            failing.append(result.seed)
    return {"bug": bug or "none (control)", "failing": len(failing), "seeds": len(seeds),
            "by_checker": dict(by.most_common()), "first": failing[0] if failing else None,
            "wall_s": round(time.perf_counter() - started, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--start", type=int, default=0)
    args = parser.parse_args()
    seeds = list(range(args.start, args.start + args.seeds))
    control_failing = 0
    for bug in [None, *(f.name for f in fields(PlantedBugs))]:
        row = measure(bug, seeds, default_jobs())
        print(json.dumps(row), flush=True)
        if bug is None:
            control_failing = int(str(row["failing"]))
    return 1 if control_failing else 0


if __name__ == "__main__":
    raise SystemExit(main())
