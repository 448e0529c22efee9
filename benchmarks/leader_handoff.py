"""How long writes pause when the leader goes away, by the way it goes.

    .venv/bin/python benchmarks/leader_handoff.py [--trials 5] [--modes remove,transfer,kill]

Each trial starts a fresh 3-node local cluster (real processes, loopback),
runs one client writing a strong key after another through all three
endpoints, and after 3 s of writes makes the leader go away:

- ``remove``: ``configsvc member remove <leader>`` (the leader hands
  leadership off first, ``strong.handoff``; without it, it commits its own
  removal and steps down, and the others wait out an election timeout);
- ``transfer``: ``configsvc member transfer-leader``;
- ``kill``: ``kill -9`` of the leader (a crash: an election timeout, a
  pre-vote and phase 1; the reference).

It reports, per mode, the longest gap between two acknowledged writes in the
10 s after the event (median and worst over the trials). The client retries
refused writes itself, so the gap is what an application sees.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from configsvc.client import Client, ClientError
from configsvc.localcluster import LocalCluster, wait_for

NAMESPACES = [{"name": "app", "consistency": "strong"}]


class Writer(threading.Thread):
    def __init__(self, endpoints: list[str]) -> None:
        super().__init__(daemon=True)
        self.endpoints = endpoints
        self.acked: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with Client(self.endpoints, timeout=5.0, attempts=20) as client:
            i = 0
            while not self.stop.is_set():
                try:
                    client.put("app", f"k{i % 100}", str(i))
                except (ClientError, httpx.HTTPError):
                    continue
                self.acked.append(time.monotonic())
                i += 1


def longest_gap(acked: list[float], start: float, end: float) -> float:
    """The longest time without an acknowledged write in [start, end]."""
    times = [start] + [t for t in acked if start < t < end] + [end]
    return max(b - a for a, b in itertools.pairwise(times))


def trial(mode: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        c = LocalCluster(Path(tmp), 3, namespaces=NAMESPACES)
        try:
            c.start_all()
            writer = Writer(list(c.endpoints))
            writer.start()
            wait_for(lambda: len(writer.acked) >= 50, 60, "writes")
            time.sleep(3.0)  # a steady state before the event (measured, not waited on)
            leader = c.leader()
            assert leader is not None
            event = time.monotonic()
            if mode == "kill":
                c.kill(leader)
            else:
                args = ["remove", leader] if mode == "remove" else ["transfer-leader"]
                done = subprocess.run(
                    [sys.executable, "-m", "configsvc.cli", "member", *args,
                     "--endpoint", c.url(leader)], capture_output=True, text=True, timeout=120)
                if done.returncode != 0:
                    raise SystemExit(f"{mode}: {done.stderr}")
            time.sleep(max(0.0, event + 10.0 - time.monotonic()))  # the window measured
            writer.stop.set()
            writer.join(timeout=30)
            return longest_gap(writer.acked, event, event + 10.0)
        finally:
            c.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--modes", default="remove,transfer,kill")
    args = parser.parse_args()
    for mode in args.modes.split(","):
        gaps = [trial(mode) for _ in range(args.trials)]
        print(f"{mode:9} longest write gap: median {statistics.median(gaps) * 1000:6.0f} ms, "
              f"worst {max(gaps) * 1000:6.0f} ms  ({', '.join(f'{g * 1000:.0f}' for g in gaps)})",
              flush=True)


if __name__ == "__main__":
    main()
