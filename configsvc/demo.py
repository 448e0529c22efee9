"""``make demo``: the partition lab's default run on a real 5-node cluster.

Five node processes on this machine (real sockets, real fsync), a strong
namespace and eventual ones side by side, clients pinned to every node, and
a partition into a majority (with the leader) and a minority for about
twenty seconds, then the heal. About a minute and a half in all; it stops
every process and exits by itself. It prints the comparison table and where
the report is (``report.html`` with its plots, ``summary.json``,
``history.jsonl``): the strong namespace refuses writes on the minority side
and stays linearizable; the eventual namespace stays available on both sides
and converges after the heal; every checker reports 0 violations.

The exit code is 0 only if every checker passed.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from configsvc.lab.report import print_report, write_report
from configsvc.lab.run import run_lab

SCENARIO = "split"
NODES = 5
DURATION = 50.0


def main(out: str | Path | None = None) -> int:
    target = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="configsvc-demo-"))
    if target.exists() and not target.is_dir():
        print(f"error: --out {target} exists and is not a directory", file=sys.stderr)
        return 2
    print(f"partition lab: {NODES} node processes, scenario {SCENARIO!r}, {DURATION:g} s of "
          "traffic (before, during and after the fault) ...", flush=True)
    try:
        result = run_lab(SCENARIO, NODES, DURATION,
                         progress=lambda text: print(f"  {text}", flush=True))
    except TimeoutError as exc:  # the cluster did not come up or settle in time
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_report(result, target)
    print_report(result, out=target)
    return 1 if any(result.verdicts.violations.values()) or result.verdicts.inconclusive else 0
