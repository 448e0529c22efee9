"""Config documents on a real three-node cluster (processes, sockets, fsync): the
Python client and ``configsvc config get`` through any node, in a strong and an
eventual namespace, and a blocking fetch on one node woken by a write on another.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from configsvc.client import Client, ConfigDocument
from tests.cluster import LocalCluster, wait_for
from tests.test_cli import COMMAND

pytestmark = pytest.mark.slow

DOC = {"db": {"url": "postgres://db/app", "pool": "10"}, "feature": {"beta": "true"}}


def config_get(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, "config", "get", *args], capture_output=True, text=True,
                          timeout=60)


def test_documents_through_any_node_the_cli_and_a_blocking_fetch(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, nodes=3)
    try:
        c.start_all()
        n1, n2, n3 = (c.url(n) for n in c.ids)
        with Client(n2) as writer:
            for ns in ("app", "disc"):
                writer.put(ns, "svc/db/url", "postgres://db/app")
                writer.put(ns, "svc/db/pool", "10")
                writer.put(ns, "svc/feature/beta", "true")
        for url in (n1, n3):
            with Client(url) as reader:
                assert (doc := reader.config_get("app", "svc")) is not None and doc.data == DOC
                wait_for(lambda r=reader: (d := r.config_get("disc", "svc")) and d.data == DOC,
                         15, f"the eventual writes at {url}")

        done = config_get("app", "svc", "--format", "yaml", "--endpoint", n1)
        assert done.returncode == 0, done.stderr
        assert yaml.safe_load(done.stdout) == DOC
        done = config_get("disc", "svc/", "--endpoint", n1)
        assert done.returncode == 0 and json.loads(done.stdout) == DOC
        missing = config_get("nope", "svc", "--endpoint", n1)
        assert missing.returncode == 1
        assert missing.stderr.startswith("error: namespace_not_found:"), missing.stderr

        with Client(n1) as watcher:
            first = watcher.config_get("app", "svc")
            assert first is not None
            woke: list[ConfigDocument | None] = []
            blocked = threading.Thread(target=lambda: woke.append(watcher.config_get(
                "app", "svc", etag=first.etag, index=first.index, wait=30)))
            blocked.start()
            with Client(n2) as writer:
                writer.put("app", "svc/feature/beta", "false")
            blocked.join(20)
            assert not blocked.is_alive() and woke[0] is not None
            assert woke[0].data["feature"] == {"beta": "false"}
    finally:
        c.stop_all()
