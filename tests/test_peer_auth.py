"""Authenticated peers by default (real ``configsvc serve`` processes, real sockets).

The forged-peer test: a socket connects to a running leader's peer port and
tries to speak for a node with a wrong secret, no secret, a replayed
handshake, or the right secret but a node id outside the cluster. After its
handshake it pipelines a forwarding frame (channel ``rpc``) that, were it
read, makes the leader write a key. Each attempt must be refused with its
reason, counted in the leader's ``peer_auth`` health, and its key must never
appear. The control — the same forger with the right secret and a member's
id — writes its key, which proves the payload would reach the core.

The refused configuration: a node with neither a peer secret nor mutual TLS
exits non-zero with a message, and so does one whose secret file others
may read; ``insecure_peers: true`` starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import yaml

from configsvc.localcluster import LocalCluster as PlainCluster
from configsvc.runtime.transport.wire import (
    CHALLENGE,
    HELLO,
    MAX_HANDSHAKE_FRAME,
    NONCE_BYTES,
    PROOF,
    PROTOCOL_VERSION,
    REJECT,
    WELCOME,
    control_frame,
    data_frame,
    handshake_proof,
    read_frame,
)
from tests.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three members configured, n1 and n2 running: n3's id is a member nobody holds."""
    c = LocalCluster(tmp_path_factory.mktemp("peer-auth"), nodes=3)
    try:
        c.start("n1")
        c.start("n2")
        wait_for(lambda: c.leader(["n1", "n2"]), 90, "a leader of n1 and n2")
        yield c
    finally:
        c.stop_all()


def peer_port(c: LocalCluster, nid: str) -> int:
    nodes = yaml.safe_load(c.config_path.read_text())["nodes"]
    return int(next(n["peer_port"] for n in nodes if n["id"] == nid))


def put_frame(key: str) -> bytes:
    """A forwarding request that writes ``app/key`` on the node that reads it."""
    request = ["req", 1, "PUT", f"/v1/kv/app/{key}", "", [["content-type", "text/plain"]], b"forged"]
    return data_frame(b"rpc", msgpack.packb(request, use_bin_type=True))


def reply(body: bytes) -> str:
    """``welcome``, or the reason of a REJECT."""
    if body[0] == WELCOME:
        return "welcome"
    assert body[0] == REJECT, body[:1]
    return str(msgpack.unpackb(body[1:])[0])


async def forge(port: int, *, src: str, dst: str, secret: bytes | None, key: str,
                cluster_id: str = "local", replay: tuple[bytes, bytes] | None = None,
                tls: ssl.SSLContext | None = None) -> tuple[str, tuple[bytes, bytes]]:
    """Handshake as ``src`` (or replay recorded hello and proof frames; over TLS with
    ``tls``), then pipeline ``put_frame(key)``. Returns the listener's answer and the
    frames sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    try:
        nonce = secrets.token_bytes(NONCE_BYTES)
        hello = replay[0] if replay else control_frame(
            HELLO, [PROTOCOL_VERSION, cluster_id, src, dst, nonce])
        writer.write(hello)
        body = await read_frame(reader, MAX_HANDSHAKE_FRAME)
        if body[0] != CHALLENGE:
            return reply(body), (hello, b"")
        _, server_nonce, _ = msgpack.unpackb(body[1:])
        proof = replay[1] if replay else control_frame(
            PROOF, [handshake_proof(secret, "client", cluster_id, src, dst, nonce, server_nonce)])
        writer.write(proof + put_frame(key))
        await writer.drain()
        return reply(await read_frame(reader, MAX_HANDSHAKE_FRAME)), (hello, proof)
    finally:
        writer.transport.abort()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await writer.wait_closed()


def peer_auth(c: LocalCluster, nid: str) -> dict[str, Any]:
    data: dict[str, Any] = c.health(nid)["peer_auth"]
    return data


def absent(c: LocalCluster, nid: str, key: str) -> bool:
    return c.http.get(f"{c.url(nid)}/v1/kv/app/{key}").status_code == 404


def test_a_forged_peer_is_refused_counted_and_never_reaches_a_core(cluster: LocalCluster) -> None:
    c = cluster
    leader = wait_for(lambda: c.leader(["n1", "n2"]), 60, "a leader")
    port = peer_port(c, leader)
    assert c.secret_file is not None
    secret = c.secret_file.read_text().strip().encode()

    def attempt(reason: str, **kw: Any) -> tuple[bytes, bytes]:
        before = peer_auth(c, leader)["rejected"].get(reason, 0)
        answer, sent = asyncio.run(forge(port, dst=leader, **kw))
        assert answer == reason, kw
        wait_for(lambda: peer_auth(c, leader)["rejected"].get(reason, 0) > before, 30,
                 f"the leader to count a refusal for {reason!r}")
        return sent

    attempt("auth", src="n3", secret=b"W" * 64, key="wrong-secret")
    attempt("auth", src="n3", secret=None, key="no-secret")
    attempt("unknown-node", src="n9", secret=secret, key="not-a-member")
    attempt("cluster", src="n3", secret=secret, key="other-cluster", cluster_id="elsewhere")
    assert peer_auth(c, leader)["auth_failures"]["n3"] >= 2

    # The control: the right secret and a member's id get the frame read and the
    # key written — the payload the refused attempts carried would have worked.
    answer, recorded = asyncio.run(forge(port, src="n3", dst=leader, secret=secret, key="control"))
    assert answer == "welcome"
    wait_for(lambda: not absent(c, leader, "control"), 30, "the control's key")

    # A replay of that successful handshake: the listener's new nonce makes the proof stale.
    attempt("auth", src="n3", secret=None, key="replayed", replay=recorded)
    # Give every refused frame the time the control took, and longer: none was read.
    wait_for(lambda: not absent(c, leader, "control"), 5, "the control's key, again")
    for nid in ("n1", "n2"):
        for key in ("wrong-secret", "no-secret", "not-a-member", "other-cluster", "replayed"):
            assert absent(c, nid, key), (nid, key)


def serve(config: dict[str, Any], root: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    path = root / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "configsvc.cli", "serve", "--config", str(path), "--node", "n1",
         "--initial-cluster-state", "new"],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def one_node(root: Path, security: dict[str, Any]) -> dict[str, Any]:
    return {"data_root": str(root / "data"), "security": security,
            "nodes": [{"id": "n1", "api_port": 1, "peer_port": 2}]}


def test_a_node_without_peer_authentication_refuses_to_start(tmp_path: Path) -> None:
    done = serve(one_node(tmp_path, {}), tmp_path)
    assert done.returncode == 2, done
    assert "peers are not authenticated" in done.stderr
    assert "insecure_peers: true" in done.stderr and "peer_secret_file" in done.stderr
    assert not (tmp_path / "data").exists()  # refused before touching the data directory


def test_a_secret_file_others_may_read_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "peer-secret"
    secret.write_text(secrets.token_hex(32))
    secret.chmod(0o644)
    done = serve(one_node(tmp_path, {"peer_secret_file": str(secret)}), tmp_path)
    assert done.returncode == 2, done
    assert "accessible by others" in done.stderr and "chmod 600" in done.stderr
    missing = serve(one_node(tmp_path, {"peer_secret_file": str(tmp_path / "nope")}), tmp_path)
    assert missing.returncode == 2 and "configsvc secret generate" in missing.stderr, missing


def test_local_clusters_generate_a_private_secret_and_insecure_peers_is_explicit(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path / "secure", nodes=1)
    c.http.close()
    assert c.secret_file is not None
    assert stat.S_IMODE(c.secret_file.stat().st_mode) == 0o600
    assert len(bytes.fromhex(c.secret_file.read_text().strip())) >= 32
    insecure = PlainCluster(tmp_path / "insecure", nodes=1, insecure_peers=True)
    assert insecure.secret_file is None and not (tmp_path / "insecure" / "peer-secret").exists()
    try:
        insecure.start("n1")  # one node: "degraded" (no failure to spare) is as good as it gets
        assert wait_for(insecure.leader, 60, "the insecure node to lead") == "n1"
    finally:
        insecure.stop_all()
