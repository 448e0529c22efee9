"""Real partitions: nodes in their own network namespaces, cuts as nftables rules.

Needs root, ``ip`` and ``nft``; skipped with the reason elsewhere, but never
when ``CI=true`` (CI runs as root and ``.ci/run`` installs iproute2 and
nftables).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from configsvc.lab.netns import NetnsError, require
from configsvc.lab.supervisor import Supervisor
from configsvc.localcluster import wait_for

pytestmark = pytest.mark.slow

try:
    require()
    UNAVAILABLE = None
except NetnsError as exc:
    UNAVAILABLE = str(exc)


@pytest.fixture(scope="module")
def sup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisor]:
    if UNAVAILABLE is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the namespaced lab: {UNAVAILABLE}")
        pytest.skip(UNAVAILABLE)
    s = Supervisor(tmp_path_factory.mktemp("netns"), 3, netns=True, namespaces=[
        {"name": "flags", "consistency": "strong"}, {"name": "disc", "consistency": "eventual"}])
    try:
        s.start_all(90)
        yield s
    finally:
        s.stop_all()
        assert s.network is not None
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert s.network.tag not in left, "the lab left namespaces behind"


def _connect(sup: Supervisor, src: str, dst: str) -> str:
    """What a TCP connect from ``src``'s namespace to ``dst``'s API port does."""
    assert sup.network is not None
    host, port = sup.network.hosts[dst], sup.cluster.api[dst]
    code = ("import socket\n"
            "try:\n"
            f"    socket.create_connection(({host!r}, {port}), timeout=1.5).close(); print('connected')\n"
            "except TimeoutError: print('timeout')\n"
            "except OSError as e: print('refused' if isinstance(e, ConnectionRefusedError) else repr(e))\n")
    done = subprocess.run([*sup.network.launch()[src], sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


def test_a_cut_drops_packets_silently_and_heal_restores_them(sup: Supervisor) -> None:
    assert _connect(sup, "n1", "n2") == "connected"
    sup.partition(["n1"], ["n2", "n3"])
    try:
        assert _connect(sup, "n1", "n2") == "timeout"  # a partition, not a refusal
        assert _connect(sup, "n2", "n1") == "timeout"
        assert _connect(sup, "n2", "n3") == "connected"
        # clients in the root namespace still reach every node
        assert httpx.get(sup.cluster.url("n1") + "/v1/cluster/health", timeout=5).status_code == 200
    finally:
        sup.heal()
    assert _connect(sup, "n1", "n2") == "connected"


def test_the_minority_refuses_strong_writes_and_takes_eventual_ones(sup: Supervisor) -> None:
    leader = wait_for(sup.cluster.leader, 30, "a leader")
    lonely = next(n for n in sup.ids if n != leader)
    url = sup.cluster.url(lonely)
    sup.isolate(lonely)
    try:
        strong = httpx.put(url + "/v1/kv/flags/k", content=b"minority", timeout=30)
        assert strong.status_code in (503, 504), strong.text
        assert httpx.put(url + "/v1/kv/disc/k", content=b"minority", timeout=10).status_code == 200
    finally:
        sup.heal()

    def everywhere() -> bool:
        return all(httpx.get(sup.cluster.url(n) + "/v1/kv/disc/k", timeout=2).json()["siblings"]
                   for n in sup.ids)
    wait_for(everywhere, 30, "the minority's eventual write on every node after the heal")
    wait_for(lambda: httpx.put(url + "/v1/kv/flags/k", content=b"healed", timeout=5).status_code == 200,
             30, "strong writes through the healed node")


def test_without_root_it_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NetnsError, match="needs root"):
        Supervisor(tmp_path, 3, netns=True)
