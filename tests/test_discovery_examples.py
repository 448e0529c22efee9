"""The discovery examples and ``configsvc svc`` as a user runs them: against a
``configsvc cluster up`` cluster, each program a subprocess, checked by what it
prints and how it exits. Every wait is for a printed line or an answer, with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from configsvc.client import Client
from tests.cluster import wait_for
from tests.test_cli import COMMAND, Lines, _free_base, ok, stop

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """A ``cluster up`` of three nodes, as the README starts one."""
    base = _free_base(3)
    up = subprocess.Popen(
        [*COMMAND, "cluster", "up", "--nodes", "3", "--api-port", str(base),
         "--data-dir", str(tmp_path_factory.mktemp("examples"))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    printed = Lines(up)
    try:
        printed.until(lambda line: line.startswith("ready"), 60, "'ready' from cluster up")
        yield [f"http://127.0.0.1:{base + i}" for i in range(3)]
    finally:
        assert stop(up) == 0
        printed.close()


def spawn(*args: str) -> tuple[subprocess.Popen[str], Lines]:
    proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc, Lines(proc)


def interrupt(proc: subprocess.Popen[str], lines: Lines, sig: int = signal.SIGINT) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=20)
    finally:
        lines.close()


def test_discovering_services_find_each_other_and_leave(endpoints: list[str]) -> None:
    n1, n2, n3 = endpoints
    script = str(EXAMPLES / "discovering_service.py")
    a = spawn(sys.executable, script, "--name", "w1", "--port", "9001", "--ttl", "1.5", "--endpoint", n1)
    b = spawn(sys.executable, script, "--name", "w2", "--port", "9002", "--ttl", "1.5", "--endpoint", n2)
    both = "peers: w1@127.0.0.1:9001 w2@127.0.0.1:9002"
    try:
        for _, lines in (a, b):
            lines.until(lambda line: line == both, 30, "both peers")
        # Longer than the TTL: the heartbeats keep both passing (a watch would print a change).
        with Client(n3) as c:
            wait_for(lambda: c.services("services").get("workers", {}).get("passing") == 2, 10, "two passing")
        assert interrupt(*a) == 0  # Ctrl-C: deregisters
        b[1].until(lambda line: line == "peers: w2@127.0.0.1:9002", 30, "w1 gone from w2's view")
    finally:
        assert interrupt(*b, sig=signal.SIGTERM) == 0
    with Client(n3) as c:
        wait_for(lambda: "workers" not in c.services("services"), 10, "both deregistered")


def test_cli_svc_register_heartbeat_list_watch_and_deregister(endpoints: list[str]) -> None:
    n1, n2, n3 = endpoints
    ok("ns", "create", "cli-svc", "--consistency", "eventual", endpoint=n1)
    ok("ns", "create", "cli-strong", "--consistency", "strong", endpoint=n1)
    watch = spawn(*COMMAND, "svc", "watch", "cli-strong", "web", "--endpoint", n3)
    try:
        watch[1].until(lambda line: line == "--", 20, "the watch's first (empty) answer")
        ok("svc", "register", "cli-strong", "web", "web-1", "--address", "10.1.1.1", "--port", "80",
           "--tag", "v1", "--meta", "zone=a", endpoint=n2)
        got = watch[1].until(lambda line: line == "--", 20, "the registration")
        assert got == ["web-1\t10.1.1.1:80\tpassing\tv1\t", "--"]
        ok("svc", "deregister", "cli-strong", "web", "web-1", endpoint=n1)
        assert watch[1].until(lambda line: line == "--", 20, "the deregistration") == ["--"]
    finally:
        assert interrupt(*watch) == 130
    beating = spawn(*COMMAND, "svc", "register", "cli-svc", "db", "db-1", "--port", "5432", "--ttl", "1",
                    "--heartbeat", "--endpoint", n1)
    try:
        beating[1].until(lambda line: line.startswith("heartbeating every"), 20, "the heartbeat loop")
        wait_for(lambda: "db-1\t127.0.0.1:5432\tpassing" in ok("svc", "list", "cli-svc", "db", endpoint=n1),
                 10, "db-1 passing")
        assert ok("svc", "list", "cli-svc", endpoint=n1) == "db\t1/1 passing\t\n"
    finally:
        assert interrupt(*beating) == 0
    assert ok("svc", "list", "cli-svc", "db", endpoint=n1) == ""  # deregistered on Ctrl-C
    bad = subprocess.run([*COMMAND, "svc", "register", "cli-svc", "db", "x", "--heartbeat", "--endpoint", n1],
                         capture_output=True, text=True, timeout=30)
    assert (bad.returncode, bad.stderr) == (2, "error: --heartbeat needs --ttl\n")
    bad = subprocess.run([*COMMAND, "svc", "register", "cli-svc", "db", "x", "--ttl", "-1", "--endpoint", n1],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and bad.stderr.startswith("error: invalid_argument: ttl"), bad.stderr


def test_config_app_reloads_on_every_change_and_keeps_the_last_good_one(endpoints: list[str]) -> None:
    n1 = endpoints[0]
    with Client(n1) as c:
        c.create_namespace("config", "strong")
        c.put("config", "myapp/greeting", "hello")
        c.put("config", "myapp/workers", "4")
        # Through a follower: the document comes from the leader, with its ETag.
        leader = c.health()["strong"]["leader"]
        follower = next(url for i, url in enumerate(endpoints) if f"n{i + 1}" != leader)
        app = spawn(sys.executable, str(EXAMPLES / "config_app.py"), "--endpoint", follower)
        try:
            def next_line(what: str) -> str:
                return app[1].until(lambda line: True, 30, what)[-1]

            assert next_line("the first version") == 'config v1: {"greeting": "hello", "workers": "4"}'
            c.put("config", "myapp/workers", "8")
            assert next_line("the change") == 'config v2: {"greeting": "hello", "workers": "8"}'
            c.put("config", "myapp/workers", "lots")
            rejected = next_line("the bad version")
            assert rejected.startswith("rejected ") and rejected.endswith(
                "workers must be a number from 1 to 64, not 'lots'; "
                "still running on Settings(greeting='hello', workers=8)"), rejected
            c.put("config", "elsewhere/x", "1")  # outside the prefix: no reload
            c.put("config", "myapp/workers", "2")
            assert next_line("the fix") == 'config v3: {"greeting": "hello", "workers": "2"}'
        finally:
            assert interrupt(*app) == 0
