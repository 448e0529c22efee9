"""TLS for the client APIs and mutual TLS between peers (real processes, real sockets).

One three-node cluster whose APIs serve HTTPS and whose peers speak mutual
TLS only (no peer secret), with certificates from a CA the test makes
(``configsvc.lab.certs``). It shows: the client and the CLI work with the CA
(``--ca-file`` or ``$CONFIGSVC_CA_FILE``) and fail without it; a plain-HTTP
client fails cleanly and the node serves on; the peers elect, forward and
commit; a peer presenting a certificate from another CA, or a certificate of
the right CA that names another node, is refused and counted, and what it
pipelined never reaches a core — while the same forger holding the member's
own certificate gets its write in.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from configsvc.client import Client, ClientError, decode_value
from configsvc.lab.certs import CertificateAuthority, make_ca
from configsvc.localcluster import LocalCluster
from configsvc.security import mutual_tls
from tests.cluster import NAMESPACES, wait_for
from tests.test_cli import COMMAND, Lines, _free_base, stop
from tests.test_peer_auth import absent, forge, peer_auth, peer_port

pytestmark = pytest.mark.slow


class TlsCluster:
    def __init__(self, root: Path) -> None:
        self.ca = make_ca(root / "certs")
        for nid in ("n1", "n2", "n3"):
            self.ca.issue(nid)
        files = {"ca_file": str(self.ca.ca_file), "cert_file": str(root / "certs" / "{node}.pem"),
                 "key_file": str(root / "certs" / "{node}-key.pem")}
        self.cluster = LocalCluster(root, nodes=3, namespaces=NAMESPACES, timing={"request_timeout": 3.0},
                                    tls={"api": files, "peers": files})
        self.ca_file = str(self.ca.ca_file)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    t = TlsCluster(tmp_path_factory.mktemp("tls"))
    try:
        t.cluster.start_all(timeout=120)
        yield t
    finally:
        t.cluster.stop_all()


def cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "CONFIGSVC_CA_FILE"}
    return subprocess.run([sys.executable, "-m", "configsvc.cli", *argv], capture_output=True, text=True,
                          timeout=60, env={**clean, **(env or {})})


def test_the_cluster_runs_on_mutual_tls_alone(tls: TlsCluster) -> None:
    c = tls.cluster
    assert c.secret_file is None
    config = c.config_path.read_text()
    assert "peer_secret" not in config and "insecure_peers" not in config
    assert all(url.startswith("https://") for url in c.endpoints)


def test_api_over_tls_works_with_the_ca_and_fails_without(tls: TlsCluster) -> None:
    c = tls.cluster
    with Client(c.endpoints, ca_file=tls.ca_file) as client:
        client.put("app", "tls-key", "over-tls")
        assert decode_value(client.get_kv("app", "tls-key")["kv"]) == b"over-tls"
    with Client(c.endpoints[0], attempts=1) as client, pytest.raises(ClientError) as err:
        client.namespaces()
    assert err.value.status == 503 and "CERTIFICATE_VERIFY_FAILED" in err.value.message

    url = c.url("n1")
    done = cli("kv", "put", "app", "cli-key", "v1", "--endpoint", url, "--ca-file", tls.ca_file)
    assert done.returncode == 0, done.stderr
    done = cli("kv", "get", "app", "cli-key", "--endpoint", url, env={"CONFIGSVC_CA_FILE": tls.ca_file})
    assert (done.returncode, done.stdout.strip()) == (0, "v1"), done.stderr
    done = cli("kv", "get", "app", "cli-key", "--endpoint", url)
    assert done.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in done.stderr, done


def test_a_plain_http_client_to_a_tls_port_fails_cleanly(tls: TlsCluster) -> None:
    c = tls.cluster
    plain = f"http://127.0.0.1:{c.api['n1']}"
    with pytest.raises(httpx.TransportError):
        httpx.get(plain + "/v1/cluster/health", timeout=10)
    with Client(plain, attempts=1, timeout=10) as client, pytest.raises(ClientError) as err:
        client.namespaces()
    assert err.value.status == 503
    assert c.health("n1")["status"] in ("healthy", "degraded")  # it serves on


def test_peers_over_mutual_tls_elect_forward_and_commit(tls: TlsCluster) -> None:
    c = tls.cluster
    leader = wait_for(c.leader, 60, "a leader")
    follower = next(n for n in c.ids if n != leader)
    with Client(c.url(follower), ca_file=tls.ca_file) as client:  # forwarded to the leader
        client.put("app", "via-follower", "committed")
    for nid in c.ids:
        wait_for(lambda nid=nid: not absent(c, nid, "via-follower"), 30, f"the write on {nid}")
    assert all(not c.health(n)["peer_auth"]["rejected"] for n in c.ids)


def peer_context(ca: CertificateAuthority, trusted: CertificateAuthority, name: str) -> ssl.SSLContext:
    """A dialler's context presenting ``ca``'s certificate for ``name``, trusting ``trusted``."""
    issued = ca.issue(name)
    return mutual_tls(str(trusted.ca_file), str(issued.cert_file), str(issued.key_file))[1]


def test_a_peer_with_a_foreign_or_misnamed_certificate_is_refused_and_counted(
    tls: TlsCluster, tmp_path: Path
) -> None:
    c = tls.cluster
    leader = wait_for(c.leader, 60, "a leader")
    port = peer_port(c, leader)
    member = next(n for n in c.ids if n != leader)
    rogue = make_ca(tmp_path / "rogue", "rogue CA")

    def refused(reason: str, ctx: ssl.SSLContext, key: str) -> None:
        before = peer_auth(c, leader)["rejected"].get(reason, 0)
        try:
            answer, _ = asyncio.run(forge(port, src=member, dst=leader, secret=None, key=key, tls=ctx))
        except (OSError, asyncio.IncompleteReadError):
            answer = "closed"
        assert answer in (reason, "closed"), answer
        wait_for(lambda: peer_auth(c, leader)["rejected"].get(reason, 0) > before, 30,
                 f"the leader to count a refusal for {reason!r}")

    # the cluster's name for a member, signed by another CA
    refused("tls", peer_context(rogue, tls.ca, member), "foreign-ca")
    # the cluster's CA, but a certificate naming someone else
    refused("identity", peer_context(tls.ca, tls.ca, "intruder"), "misnamed")

    # The control: the member's own certificate gets the frame read and the key written.
    answer, _ = asyncio.run(forge(port, src=member, dst=leader, secret=None, key="tls-control",
                                  tls=peer_context(tls.ca, tls.ca, member)))
    assert answer == "welcome"
    wait_for(lambda: not absent(c, leader, "tls-control"), 30, "the control's key")
    for nid in c.ids:
        assert absent(c, nid, "foreign-ca") and absent(c, nid, "misnamed"), nid


def test_cluster_up_tls_serves_https_and_breaks_links_through_it(tmp_path: Path) -> None:
    """``configsvc cluster up --tls`` as a user runs it: HTTPS endpoints, a CA to
    give the CLI, peers on mutual TLS, and the cut controls still reach the nodes."""
    base = _free_base(3)
    proc = subprocess.Popen(
        [*COMMAND, "cluster", "up", "--tls", "--nodes", "3", "--api-port", str(base),
         "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out = Lines(proc)
    try:
        printed = out.until(lambda line: line.startswith("control: "), 120, "the control line")
        assert any(line.startswith(f"ready: 3 nodes at https://127.0.0.1:{base}") for line in printed), printed
        assert not any(line.startswith("peer secret") for line in printed), printed
        ca_file = str(tmp_path / "certs" / "ca.pem")
        assert any(line.startswith(f"tls: CA {ca_file}") for line in printed), printed
        url = f"https://127.0.0.1:{base + 1}"
        done = cli("kv", "put", "app", "up-tls", "yes", "--endpoint", url, "--ca-file", ca_file)
        assert done.returncode == 1 and "namespace" in done.stderr  # no "app" namespace: answered over TLS
        done = cli("ns", "create", "app", "--consistency", "strong", "--endpoint", url, "--ca-file", ca_file)
        assert done.returncode == 0, done.stderr
        done = cli("kv", "put", "app", "up-tls", "yes", "--endpoint", url, "--ca-file", ca_file)
        assert done.returncode == 0, done.stderr
        control = next(line.split()[1] for line in printed if line.startswith("control: "))
        for command in (["isolate", "n1"], ["heal"]):  # the cuts go to the nodes' admin API over HTTPS
            done = subprocess.run([*COMMAND, "cluster", *command, "--control", control],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done
    finally:
        code = stop(proc)
        out.close()
    assert code == 0
