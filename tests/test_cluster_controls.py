"""``configsvc cluster up`` as a user runs it, broken the way a user breaks it.

A real ``cluster up`` process with three real nodes: ``kill -9`` of the
leader's process leaves the others serving under a new leader, ``cluster
up`` says which node died and how, ``cluster restart`` brings it back, and
``cluster partition`` / ``heal`` cut and mend the network. SIGTERM stops
everything.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from configsvc.client import Client, ClientError
from configsvc.lab.control import ControlServer
from configsvc.localcluster import wait_for

pytestmark = pytest.mark.slow


class Up:
    """A running ``configsvc cluster up`` and the lines it printed."""

    def __init__(self, root: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        """``extra``: more ``cluster up`` arguments; ``env``: its whole environment."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "configsvc.cli", "cluster", "up", "--nodes", "3", "--api-port", "0",
             "--data-dir", str(root), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"})
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def stop(self) -> int:
        """SIGTERM (if still running); the exit code once everything stopped."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """The first printed line from now on matching ``pattern``."""
        def found() -> re.Match[str] | None:
            try:
                while True:
                    line = self.lines.get_nowait()
                    self.seen.append(line)
                    if match := re.search(pattern, line):
                        return match
            except queue.Empty:
                return None
        match: re.Match[str] = wait_for(found, timeout, f"cluster up to print {pattern!r} "
                                        f"(printed so far: {self.seen})")
        return match


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "configsvc.cli", "cluster", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Up, list[str], str]]:
    """One ``cluster up`` for the module (the tests run in order: the last one stops it)."""
    running = Up(tmp_path_factory.mktemp("cluster"))
    try:
        ready = running.expect(r"^ready: 3 nodes at (.*) \(data in")
        control = running.expect(r"^control: (\S+)").group(1)
        yield running, ready.group(1).split(", "), control
    finally:
        running.stop()


def status(control: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(control + "/status", timeout=10).json()
    return data


def leader(urls: list[str], among: list[str] | None = None) -> str | None:
    """The leader every answering node agrees on."""
    seen = set()
    for url in urls:
        try:
            seen.add(httpx.get(url + "/v1/cluster/health", timeout=1).json()["strong"]["leader"])
        except httpx.HTTPError:
            continue
    return seen.pop() if len(seen) == 1 and None not in seen else None


def test_kill_9_of_the_leader_leaves_the_others_serving_and_restart_brings_it_back(
        up: tuple[Up, list[str], str]) -> None:
    running, urls, control = up
    api = dict(zip(["n1", "n2", "n3"], urls, strict=True))
    with Client(urls) as client:
        client.create_namespace("flags", "strong")
        client.put("flags", "before", "1")
    old = wait_for(lambda: leader(urls), 30, "a leader")
    pid = status(control)["nodes"][old]["pid"]
    os.kill(pid, signal.SIGKILL)  # what a user does: kill -9 <pid>
    running.expect(rf"^{old} exited: killed by SIGKILL")
    others = [n for n in api if n != old]
    def new_leader() -> str | None:
        agreed = leader([api[n] for n in others])
        return agreed if agreed in others else None  # (they may still name the dead one)
    assert wait_for(new_leader, 30, "a new leader among the survivors") != old
    assert running.proc.poll() is None, "cluster up stopped when one node died"
    assert all(status(control)["nodes"][n]["up"] for n in others)
    with Client([api[n] for n in others]) as client:
        client.put("flags", "after", "2")
        assert client.get("flags", "before") == b"1"
    shown = cli("status", "--control", control)
    assert shown.returncode == 0 and re.search(rf"{old}\s+down \(killed by SIGKILL\)", shown.stdout), shown

    restarted = cli("restart", old, "--control", control)
    assert restarted.returncode == 0, restarted.stderr
    assert re.search(rf"{old}\s+up \(pid \d+\)", restarted.stdout), restarted.stdout

    def caught_up() -> bool:
        kv = httpx.get(api[old] + "/v1/kv/flags/after", params={"consistency": "stale"}, timeout=2)
        return kv.status_code == 200 and kv.json()["kv"] is not None
    wait_for(caught_up, 30, f"{old} to catch up after its restart")
    assert wait_for(lambda: leader(urls), 30, "one leader for all three") in api


def test_partition_and_heal_from_the_command_line(up: tuple[Up, list[str], str]) -> None:
    running, urls, control = up
    api = dict(zip(["n1", "n2", "n3"], urls, strict=True))
    with Client(urls) as client:
        client.create_namespace("disc", "eventual")
    first = wait_for(lambda: leader(urls), 30, "a leader")
    lonely = next(n for n in api if n != first)
    cut = cli("partition", lonely, " ".join(n for n in api if n != lonely), "--control", control)
    assert cut.returncode == 0, cut.stderr
    assert f"{lonely} -/->" in cut.stdout
    assert len(status(control)["cut"]) == 4  # two links each way
    with Client([api[lonely]], timeout=3, attempts=1) as alone:
        with pytest.raises(ClientError) as refused:
            alone.put("flags", "k", "minority")
        assert refused.value.status in (503, 504)
        alone.put("disc", "k", "minority")  # eventual: still accepted on the minority side
    healed = cli("heal", "--control", control)
    assert healed.returncode == 0 and "cut: none" in healed.stdout
    with Client([api[lonely]]) as client:
        wait_for(lambda: client.put("flags", "k", "healed"), 30, "the strong namespace back on the healed node")

    bad = cli("partition", "n1", "n9", "--control", control)
    assert bad.returncode == 1 and "n9" in bad.stderr
    assert cli("kill", "n7", "--control", control).returncode == 1
    assert running.stop() == 0
    assert not any(n["up"] for n in _nodes_after_stop(urls)), "a node survived cluster up's stop"


def _nodes_after_stop(urls: list[str]) -> list[dict[str, bool]]:
    out = []
    for url in urls:
        try:
            httpx.get(url + "/v1/cluster/health", timeout=1)
            out.append({"up": True})
        except httpx.HTTPError:
            out.append({"up": False})
    return out


def test_the_control_api_refuses_bad_input_with_a_reason() -> None:
    class NoCluster:
        ids = ("n1", "n2")

    server = ControlServer(NoCluster())  # type: ignore[arg-type]
    server.start()
    try:
        for method, path, body, status_code in [
            ("POST", "/partition", b"{not json", 400),
            ("POST", "/partition", b'{"groups": "n1"}', 400),
            ("POST", "/partition", b'{"groups": [["n1"]]}', 400),
            ("POST", "/kill/n1", b'{"signal": "HUP"}', 400),
            ("POST", "/one-way", b'{"from": [], "to": ["n1"]}', 400),
            ("POST", "/explode", b"", 404),
            ("GET", "/kill/n1", b"", 404),
        ]:
            answer = httpx.request(method, server.url + path, content=body, timeout=5)
            assert answer.status_code == status_code, (path, body, answer.text)
            assert answer.json()["error"]["message"]
    finally:
        server.close()
