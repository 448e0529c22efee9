"""Backups and disaster recovery on real processes (``docs/backup.md``).

A 3-node cluster with ACLs on holds strong keys, a service instance, a
policy and a token, and an eventual namespace. ``configsvc snapshot save``
runs against a follower while a client keeps writing; every write
acknowledged before the save began must be in the backup with its value.
Then every data directory is wiped (a quorum lost for good), each node is
restored from the file onto new ports, and the restarted cluster must read
back exactly the backup's keys linearizably, honour its token, accept new
writes and report healthy. Bad files and bad directories are refused with
exit code 2 and nothing written.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from configsvc.backup import Backup, BackupError, counts, decode_backup, encode_backup
from configsvc.client import Client, ClientError
from configsvc.runtime.disk_storage import strong_storage
from strong.membership import unwrap_snapshot
from strong.results import KeyValue, NamespaceInfo
from strong.services import ServiceTableState
from strong.sm_snapshot import SnapshotState, encode_snapshot
from strong.storage import recover
from tests.cluster import LocalCluster, wait_for

BOOT = "backup-test-bootstrap-token-0123456789"
ACL = {"enabled": True, "default_policy": "deny", "bootstrap_token": BOOT}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CONFIGSVC_TOKEN"}
    return subprocess.run([sys.executable, "-m", "configsvc.cli", *args],
                          capture_output=True, text=True, timeout=180, env=env)


def ok(*args: str) -> str:
    done = cli(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def acl_cluster(root: Path) -> LocalCluster:
    cluster = LocalCluster(root, acl=ACL)
    cluster.http.headers["authorization"] = f"Bearer {BOOT}"  # namespaces need a token
    return cluster


class Writer:
    """Puts ``app/w-<i>`` = ``<i>`` in a loop; ``acked`` grows after each acknowledgement."""

    def __init__(self, endpoints: list[str]) -> None:
        self.endpoints = endpoints
        self.acked: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with Client(self.endpoints, token=BOOT) as client:
            i = 0
            while not self.stop.is_set():
                client.put("app", f"w-{i}", str(i))
                self.acked.append(f"w-{i}")
                i += 1


def inspect(path: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(ok("snapshot", "inspect", str(path), "--json", "--keys"))
    return report


@pytest.mark.slow
def test_save_under_writes_then_restore_after_every_disk_is_lost(tmp_path: Path) -> None:
    root = tmp_path / "c"
    cluster = acl_cluster(root)
    backup = tmp_path / "cluster.backup"
    try:
        cluster.start_all(timeout=90)
        with Client(cluster.endpoints, token=BOOT) as admin:
            for i in range(40):
                admin.put("app", f"k{i}", f"v{i}")
            admin.register("app", "web", "web-1", address="10.0.0.1", port=80)
            admin.acl_set_policy("app-readers", [("key", "app/", "read")])
            reader = admin.acl_create_token(["app-readers"], "reads app")["secret"]
            admin.put("disc", "host-a", "up")  # eventual contents: not in a backup
            names = {ns["name"] for ns in admin.namespaces()}
        writer = Writer(cluster.endpoints)
        writer.thread.start()
        wait_for(lambda: len(writer.acked) >= 20, 60, "writes under way")
        leader = cluster.leader()
        follower = next(n for n in cluster.ids if n != leader)
        acked_before = list(writer.acked)  # acknowledged before the save began
        saved = ok("snapshot", "save", str(backup), "--endpoint", cluster.url(follower),
                   "--token", BOOT)
        wait_for(lambda: len(writer.acked) >= len(acked_before) + 20, 60, "writes after the save")
        writer.stop.set()
        writer.thread.join(timeout=60)
    finally:
        cluster.stop_all()
    assert not (tmp_path / "cluster.backup.part").exists()
    report = inspect(backup)
    assert f"index {report['applied_index']}," in saved and report["sha256"] in saved
    assert (report["cluster_id"], report["node_id"]) == ("local", follower)
    kv = report["kv"].get("app", {})
    missing = [k for k in acked_before if kv.get(k) != k.removeprefix("w-")]
    assert not missing, f"acknowledged before the save, not in the backup: {missing[:5]}"
    assert all(kv[f"k{i}"] == f"v{i}" for i in range(40))
    assert (report["services"], report["instances"]) == (1, 1)
    assert report["acl_policies"] >= 1 and report["acl_tokens"] >= 1
    assert report["strong_namespaces"] == 1 and report["eventual_namespaces"] >= 1

    # The disaster: every disk is gone. Restore each node, on new ports.
    for nid in cluster.ids:
        shutil.rmtree(root / "data" / nid)
    restored = acl_cluster(root)
    for nid in restored.ids:
        out = ok("snapshot", "restore", str(backup), "--config", str(restored.config_path),
                 "--node", nid)
        assert f"index {report['applied_index']}" in out
    try:
        restored.start_all(timeout=90)
        with Client(restored.endpoints, token=BOOT) as admin:
            listed = {k["key"]: base64.b64decode(k["value"]).decode() for k in admin.list("app")}
            assert listed == kv, "the restored keys are exactly the backup's"
            for key in (*acked_before[-5:], "k0", "k39"):
                assert admin.get("app", key) == kv[key].encode()
            assert [i["instance_id"] for i in admin.instances("app", "web")] == ["web-1"]
            assert {ns["name"] for ns in admin.namespaces()} == names
            admin.put("app", "after-restore", "yes")
            admin.put("disc", "after-restore", "yes")
            assert admin.get("app", "after-restore") == b"yes"
        with Client(restored.endpoints, token=reader) as limited:
            assert limited.get("app", "k1") == b"v1"  # the restored token and policy hold
            with pytest.raises(ClientError) as denied:
                limited.put("app", "k1", "x")
            assert denied.value.status == 403
        status = json.loads(ok("status", "--json", "--endpoint", restored.url("n2"),
                               "--token", BOOT))
        assert [n["id"] for n in status["nodes"]] == ["n1", "n2", "n3"]
        wait_for(lambda: all(restored.health(n)["status"] == "healthy" for n in restored.ids),
                 60, "healthy after the restore")
    finally:
        restored.stop_all()


def _state(index: int = 7, version: int = 5) -> bytes:
    info = NamespaceInfo("app", "strong")
    return encode_snapshot(SnapshotState(
        applied_index=index, version=version, revision=1,
        namespaces=((info, (KeyValue(b"k", b"v", 1, 1, 1, 0),)),), sessions=(),
        services=(("app", ServiceTableState(0, 0, (), ())),)))


def _file(cluster_id: str = "local", version: int = 5) -> bytes:
    return encode_backup(Backup(cluster_id, "n1", 7, version, 0, _state(7, version)))


def test_bad_files_and_directories_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "c")  # its cluster file only: nothing is started
    config = str(cluster.config_path)
    data = tmp_path / "c" / "data"
    good = _file()
    cases = {
        "truncated": (good[:-10], "checksum mismatch"),
        "flipped": (good[:40] + bytes([good[40] ^ 1]) + good[41:], "checksum mismatch"),
        "foreign": (_file("other"), "pass --force-cluster-id"),
        "future": (_file(version=99), "state-machine version 99"),
        "garbage": (b"not a backup at all", "wrong magic"),
    }
    for name, (content, reason) in cases.items():
        path = tmp_path / f"{name}.backup"
        path.write_bytes(content)
        done = cli("snapshot", "restore", str(path), "--config", config, "--node", "n1")
        assert done.returncode == 2 and reason in done.stderr, (name, done.stderr)
        assert not data.exists(), f"{name}: something was written"
        if name in ("truncated", "flipped"):
            inspected = cli("snapshot", "inspect", str(path))
            assert inspected.returncode == 2 and reason in inspected.stderr

    path = tmp_path / "good.backup"
    path.write_bytes(good)
    (data / "n1").mkdir(parents=True)
    (data / "n1" / "leftover").write_text("x")
    done = cli("snapshot", "restore", str(path), "--config", config, "--node", "n1")
    assert done.returncode == 2 and "is not empty" in done.stderr
    assert sorted(p.name for p in (data / "n1").iterdir()) == ["leftover"]

    # The same file restores where the directory is empty or absent (the refusals
    # above are about the input, not a restore that never works).
    (data / "n1" / "leftover").unlink()
    for nid in ("n1", "n2"):
        ok("snapshot", "restore", str(path), "--config", config, "--node", nid)
        with strong_storage(data / nid / "strong") as storage:
            state = recover(storage.load())
        members, snapshot = unwrap_snapshot(state.snapshot or b"")
        assert (state.snapshot_index, state.commit_index, state.accepted) == (7, 7, {})
        assert snapshot == _state() and members is not None and members.voters == ("n1", "n2", "n3")
        marker = json.loads((data / nid / "cluster-member").read_text())
        assert (marker["cluster_id"], marker["node_id"], marker["voting"]) == ("local", nid, True)
    assert not list(data.glob("*.restoring"))
    foreign = tmp_path / "foreign.backup"
    ok("snapshot", "restore", str(foreign), "--config", config, "--node", "n3",
       "--force-cluster-id")
    assert json.loads((data / "n3" / "cluster-member").read_text())["cluster_id"] == "local"


@pytest.mark.slow
def test_the_snapshot_route_needs_a_management_token(tmp_path: Path) -> None:
    cluster = acl_cluster(tmp_path / "c")
    try:
        cluster.start_all(timeout=90)
        with Client(cluster.endpoints, token=BOOT) as admin:
            admin.acl_set_policy("app-writers", [("key", "app/", "write")])
            writer = admin.acl_create_token(["app-writers"])["secret"]
        for token in (None, writer):
            done = cli("snapshot", "save", str(tmp_path / "x.backup"), "--endpoint",
                       cluster.url("n1"), *(["--token", token] if token else []))
            assert done.returncode == 1 and "HTTP 403" in done.stderr, done.stderr
            assert not (tmp_path / "x.backup").exists()
        ok("snapshot", "save", str(tmp_path / "x.backup"), "--endpoint", cluster.url("n1"),
           "--token", BOOT)
        # Without a quorum there is no linearizable point: refused (once a lease
        # that was still valid ran out), and no file.
        (tmp_path / "x.backup").unlink()
        for nid in ("n2", "n3"):
            cluster.kill(nid)
        target = tmp_path / "no-quorum.backup"

        def refused() -> str | None:
            done = cli("snapshot", "save", str(target), "--endpoint", cluster.url("n1"),
                       "--token", BOOT)
            if done.returncode == 0:  # a save under a still-valid lease is legitimate
                target.unlink()
                return None
            return done.stderr if done.returncode == 1 else None

        assert "HTTP 503" in wait_for(refused, 90, "a save refused without a quorum")
        assert not target.exists() and not target.with_name(target.name + ".part").exists()
    finally:
        cluster.stop_all()


def test_the_file_round_trips_and_every_damage_is_named() -> None:
    backup = Backup("prod", "n2", 7, 5, 1_764_558_000_000, _state())
    data = encode_backup(backup)
    decoded, state = decode_backup(data)
    assert decoded == backup
    assert counts(state)["keys"] == 1 and counts(state)["strong_namespaces"] == 1
    for i in range(len(data)):  # every single flipped bit is caught
        damaged = data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1:]
        with pytest.raises(BackupError):
            decode_backup(damaged)
    for cut in (0, 8, 12, len(data) // 2, len(data) - 1):
        with pytest.raises(BackupError):
            decode_backup(data[:cut])
    lying = encode_backup(Backup("prod", "n2", 8, 5, 0, _state()))  # header index 8, state 7
    with pytest.raises(BackupError, match="the state is at index 7"):
        decode_backup(lying)
    with pytest.raises(BackupError, match="does not decode"):
        decode_backup(encode_backup(Backup("prod", "n2", 7, 5, 0, b"\x93\x01\x02")))
