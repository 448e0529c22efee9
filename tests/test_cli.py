"""The ``configsvc`` command as a user runs it: ``cluster up`` as a subprocess, then
``ns``, ``kv``, ``status`` and ``sim`` as subprocesses, checking output and exit codes.

One cluster for the module (started the way the README says); every wait is for a
condition (a printed line, an answer) with a deadline.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from configsvc.localcluster import ephemeral_range, free_ports

pytestmark = pytest.mark.slow

_SCRIPT = Path(sys.executable).parent / "configsvc"
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "configsvc.cli"]


def _free_base(nodes: int) -> int:
    """A port P with P..P+n-1 (APIs), P+100..P+100+n-1 (peers) and P+200..P+200+n-1
    (Consul-compatible APIs) free on loopback."""
    for _ in range(50):
        base = free_ports(1)[0]  # outside the ephemeral range (configsvc.localcluster)
        low, high = ephemeral_range()
        if base + 200 + nodes > 65535 or (base <= high and base + 200 + nodes >= low):
            continue
        socks = []
        try:
            for port in [*range(base, base + nodes), *range(base + 100, base + 100 + nodes),
                         *range(base + 200, base + 200 + nodes)]:
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free port range on loopback")


class Lines:
    """The lines a running process prints, read by a thread, awaited with deadlines."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        self.thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self.thread.start()

    def _read(self, stdout: IO[str]) -> None:
        with stdout:
            for line in stdout:
                self.lines.put(line.rstrip("\n"))

    def close(self) -> None:
        """After the process exited: the reader sees the end and closes the pipe."""
        self.thread.join(timeout=20)

    def until(self, predicate: object, timeout: float, what: str) -> list[str]:
        """Every line up to and including the first one ``predicate`` accepts."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.0, remaining))
            except queue.Empty:
                raise AssertionError(f"no {what} within {timeout}s; printed: {seen}") from None
            seen.append(line)
            if predicate(line):  # type: ignore[operator]
                return seen


def stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    base = _free_base(3)
    data = tmp_path_factory.mktemp("cluster-up")
    proc = subprocess.Popen(
        [*COMMAND, "cluster", "up", "--nodes", "3", "--api-port", str(base), "--data-dir", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out = Lines(proc)
    try:
        printed = out.until(lambda line: line.startswith("ready"), 60, "'ready' line")
        urls = [f"http://127.0.0.1:{base + i}" for i in range(3)]
        assert printed[-1].startswith(f"ready: 3 nodes at {', '.join(urls)}"), printed
        consul = out.until(lambda line: line.startswith("consul-compatible API"), 10, "Consul ports")
        assert consul[-1].endswith(", ".join(f"http://127.0.0.1:{base + 200 + i}" for i in range(3))), consul
        yield urls
    finally:
        code = stop(proc)
        out.close()
        assert code == 0, "cluster up did not stop cleanly on SIGTERM"


def cli(*args: str, endpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--endpoint", endpoint] if endpoint else []
    return subprocess.run([*COMMAND, *args, *extra], capture_output=True, text=True, timeout=60)


def ok(*args: str, endpoint: str | None = None) -> str:
    done = cli(*args, endpoint=endpoint)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def test_cli_namespaces_and_keys_through_any_node(endpoints: list[str]) -> None:
    n1, n2, n3 = endpoints
    assert '"created": true' in ok("ns", "create", "flags", "--consistency", "strong", endpoint=n2)
    assert '"merge": "lww"' in ok("ns", "create", "hosts", "--consistency", "eventual", "--merge", "lww",
                                  endpoint=n3)
    # The list is linearizable: a follower lists both acknowledged creations at once.
    assert {"flags\tstrong", "hosts\teventual"} <= set(ok("ns", "list", endpoint=n1).splitlines())

    assert '"revision"' in ok("kv", "put", "flags", "checkout/rollout", "10%", endpoint=n2)
    ok("kv", "put", "flags", "checkout/empty", "", endpoint=n1)
    assert ok("kv", "get", "flags", "checkout/rollout", endpoint=n3) == "10%\n"
    assert ok("kv", "get", "flags", "checkout/empty", endpoint=n3) == "\n"  # empty, yet present
    assert ok("kv", "get", "flags", "checkout/rollout", "--stale", endpoint=n1) in ("10%\n", "")
    assert ok("kv", "list", "flags", "checkout/", endpoint=n1).splitlines() == [
        "checkout/empty\t", "checkout/rollout\t10%"]

    ok("kv", "put", "hosts", "web/1", "10.0.0.1:80", endpoint=n1)
    assert ok("kv", "get", "hosts", "web/1", endpoint=n1) == "10.0.0.1:80\n"
    assert ok("kv", "list", "hosts", "web/", endpoint=n1) == "web/1\t10.0.0.1:80\n"
    ok("kv", "del", "hosts", "web/1", endpoint=n1)
    gone = cli("kv", "get", "hosts", "web/1", endpoint=n1)
    assert (gone.returncode, gone.stdout) == (1, "")
    assert gone.stderr.startswith("error: key_not_found:"), gone.stderr

    assert '"deleted": 1' in ok("kv", "del", "flags", "checkout/rollout", endpoint=n3)
    missing = cli("kv", "get", "flags", "checkout/rollout", endpoint=n2)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.startswith("error: key_not_found:"), missing.stderr


def test_cli_bad_input_is_a_clear_error_and_changes_nothing(endpoints: list[str]) -> None:
    n1 = endpoints[0]
    before = ok("ns", "list", endpoint=n1)
    for args, code, message in [
        (("kv", "put", "no-such-ns", "k", "v"), 1, "error: namespace_not_found: no namespace 'no-such-ns'"),
        (("ns", "create", "bad/name", "--consistency", "strong"), 1, "error: invalid_argument: "),
        (("ns", "create", "x", "--consistency", "linear"), 2, "invalid choice: 'linear'"),
        (("kv", "put", "flags", "k", "v", "--cas", "seven"), 2, "invalid int value: 'seven'"),
    ]:
        done = cli(*args, endpoint=n1)
        assert done.returncode == code, (args, done.stdout, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    assert ok("ns", "list", endpoint=n1) == before
    refused = cli("status", endpoint="http://127.0.0.1:1")
    assert refused.returncode == 1 and refused.stderr.startswith("error: unavailable: no endpoint answered")


def test_cli_watch_prints_every_change_including_deletes(endpoints: list[str]) -> None:
    n1, n2, _ = endpoints
    ok("ns", "create", "watched", "--consistency", "strong", endpoint=n1)
    proc = subprocess.Popen([*COMMAND, "kv", "watch", "watched", "w/", "--endpoint", n2],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = Lines(proc)
    try:

        def block(what: str) -> list[str]:
            lines = out.until(lambda line: line == "--", 20, what)
            return [line.split("\t", 1)[1] for line in lines[:-1]]  # without the revision

        assert block("the initial (empty) state") == []
        ok("kv", "put", "watched", "w/a", "1", endpoint=n1)
        assert block("the first put") == ["w/a\t1"]
        ok("kv", "put", "watched", "w/b", "2", endpoint=n1)
        assert block("the second put") == ["w/a\t1", "w/b\t2"]
        ok("kv", "put", "watched", "elsewhere", "x", endpoint=n1)  # outside the prefix
        ok("kv", "del", "watched", "w/b", endpoint=n1)  # the key holding the newest revision
        assert block("the delete") == ["w/a\t1"]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
        out.close()
    assert code == 130  # interrupted: the watch ends quietly


def test_cli_status_renders_every_node_namespace_and_reason(endpoints: list[str]) -> None:
    ok("ns", "create", "shown", "--consistency", "eventual", endpoint=endpoints[0])
    ok("kv", "put", "shown", "a", "1", endpoint=endpoints[0])

    def rendered() -> str | None:
        out = ok("status", "--width", "200", endpoint=endpoints[2])
        rows = [line for line in out.splitlines() if "shown" in line]
        return out if rows and "eventual" in rows[0] and " yes " in rows[0] else None

    out = wait_for_output(rendered, 30, "n3 to show the eventual namespace's digests agreeing")
    lines = out.splitlines()
    assert lines[0] == "cluster healthy (asked n3)", lines
    assert {"nodes", "namespaces"} <= {line.strip() for line in lines}, out
    assert "reasons: none" in lines, out
    header = next(line for line in lines if "address" in line)
    for column in ("id", "address", "role", "ballot", "commit", "applied", "lag", "health", "reachable"):
        assert column in header, header
    rows = {line.split()[1]: line for line in lines if line.split()[1:2] in (["n1"], ["n2"], ["n3"])}
    assert set(rows) == {"n1", "n2", "n3"}, out
    assert sum(" leader " in row for row in rows.values()) == 1, out
    assert all(" healthy " in row and " yes " in row for row in rows.values()), out
    assert endpoints[0].removeprefix("http://") in rows["n1"], rows["n1"]

    raw = json.loads(ok("status", "--json", endpoint=endpoints[1]))
    assert raw["node"] == "n2" and [n["id"] for n in raw["nodes"]] == ["n1", "n2", "n3"]


def wait_for_output(attempt: object, timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = attempt()  # type: ignore[operator]
        if out is not None:
            return str(out)
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout}s")


@pytest.mark.parametrize("store", ["strong", "eventual"])
def test_cli_sim_replays_one_seed(store: str) -> None:
    done = subprocess.run([*COMMAND, "sim", store, "--seed", "3"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CONFIGSVC_SIM_JOBS": "1"})
    assert done.returncode == 0, (done.stdout, done.stderr)
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"{store}: seeds=1 failures=0 ops="), summary
    ops = int(summary.split(" ops=")[1].split()[0])
    assert ops > 0, summary
