"""ACLs on a real cluster: ``configsvc cluster up --acl``, the real ``py-consul``
client, and the ``configsvc`` command line.

One ``cluster up --acl`` (three node processes) for the module, run without
``$CONFIGSVC_ACL_BOOTSTRAP_TOKEN`` so it generates the bootstrap token and
prints it once. Then, through py-consul on the Consul face and through the
CLI on the native API: a token allowed by its policy, a denied request
(which changes nothing), the anonymous request, an expired token and a
deleted one — on the leader and on followers (which forward writes, token
and all, and look tokens up in their own applied state).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import consul
import pytest

from configsvc.client import Client, ClientError
from configsvc.localcluster import wait_for
from tests.test_cluster_controls import Up

pytestmark = pytest.mark.slow


class Running:
    def __init__(self, up: Up, urls: list[str], consul_urls: list[str], root_token: str) -> None:
        self.up, self.urls, self.consul_urls, self.root_token = up, urls, consul_urls, root_token

    def consul(self, i: int, token: str | None = None) -> consul.Consul:
        host_port = self.consul_urls[i].removeprefix("http://")
        host, port = host_port.rsplit(":", 1)
        return consul.Consul(host=host, port=int(port), token=token, connections_timeout=10)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("acl")
    private_tmp = root / "tmp"  # cluster up's state file stays this test's own
    private_tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CONFIGSVC_ACL_BOOTSTRAP_TOKEN", "CONFIGSVC_TOKEN")}
    up = Up(root / "cluster", "--acl", env={**env, "TMPDIR": str(private_tmp)})
    try:
        urls = up.expect(r"^ready: 3 nodes at (.*) \(data in").group(1).split(", ")
        consul_urls = up.expect(r"^consul-compatible API: (.*)$").group(1).split(", ")
        token = up.expect(r"^acl: on, default deny; bootstrap token \(shown once\): (\S+)$").group(1)
        with Client(urls, token=token) as root:
            root.create_namespace("app", "strong")
        yield Running(up, urls, consul_urls, token)
    finally:
        assert up.stop() == 0
    assert sum(token in line for line in up.seen) == 1, "the bootstrap token is printed once"


def cli(running: Running, *args: str, token: str | None = None, env_token: str | None = None,
        endpoint: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CONFIGSVC_TOKEN"}
    if env_token is not None:
        env["CONFIGSVC_TOKEN"] = env_token
    flags = ["--endpoint", running.urls[endpoint], *(["--token", token] if token else [])]
    return subprocess.run([sys.executable, "-m", "configsvc.cli", *args, *flags],
                          capture_output=True, text=True, timeout=120, env=env)


def test_the_generated_bootstrap_token_manages_and_the_anonymous_token_is_denied(running: Running) -> None:
    with Client(running.urls, token=running.root_token) as root:
        assert root.acl_token_self()["policies"] == ["global-management"]
        root.put("app", "root-key", "1")
    with Client(running.urls) as anonymous:
        with pytest.raises(ClientError) as denied:
            anonymous.put("app", "root-key", "2")
        assert (denied.value.status, denied.value.code) == (403, "permission_denied")
    with Client(running.urls, token=running.root_token) as root:
        assert root.get("app", "root-key") == b"1"


def test_py_consul_allowed_denied_anonymous_expired_and_deleted(running: Running) -> None:
    root = running.consul(0, running.root_token)
    rules = 'key_prefix "app/pub/" { policy = "write" }\nkey_prefix "app/pub/ro" { policy = "read" }'
    created = root.acl.policy.create(name="consul-pub", rules=rules)
    assert created["Name"] == "consul-pub"
    token = root.acl.token.create(policies_name=["consul-pub"], description="py-consul")
    secret, accessor = token["SecretID"], token["AccessorID"]
    for i in range(3):  # every node: followers forward the write with the token
        c = running.consul(i, secret)
        wait_for(lambda c=c, i=i: c.kv.put(f"app/pub/{i}", "v") is True, 30, f"a write through node {i}")
        assert c.kv.get(f"app/pub/{i}")[1]["Value"] == b"v"
        with pytest.raises(consul.ACLPermissionDenied):
            c.kv.put("app/other", "x")
        with pytest.raises(consul.ACLPermissionDenied):
            c.kv.put("app/pub/ro", "x")
        with pytest.raises(consul.ACLPermissionDenied):
            running.consul(i).kv.get(f"app/pub/{i}")  # anonymous
    assert root.kv.get("app/other")[1] is None and root.kv.get("app/pub/ro")[1] is None
    assert root.acl.token.read_self()["Policies"][0]["Name"] == "global-management"
    assert accessor in {t["AccessorID"] for t in root.acl.token.list()}
    # deleted: refused everywhere once each node has applied the deletion
    assert root.acl.token.delete(accessor) is True
    for i in range(3):
        c = running.consul(i, secret)

        def refused(c: consul.Consul = c) -> bool:
            try:
                c.kv.put("app/pub/after-delete", "x")
            except consul.ACLPermissionDenied:
                return True
            return False

        wait_for(refused, 30, f"node {i} to refuse the deleted token")
    assert root.kv.get("app/pub/after-delete")[1] is None
    # expired: works, then (its expiration passed) is refused
    short = root.acl.token.create(policies_name=["consul-pub"], expiration_ttl="8s")
    expiring = running.consul(1, short["SecretID"])
    assert expiring.kv.put("app/pub/short", "1") is True

    def expired() -> bool:
        try:
            expiring.kv.get("app/pub/short")
        except consul.ACLPermissionDenied:
            return True
        return False

    wait_for(expired, 60, "the token to expire")


def test_the_cli_takes_token_and_configsvc_token(running: Running) -> None:
    root = running.root_token
    made = cli(running, "acl", "policy", "create", "cli-pub", "--rule", "key:app/cli/:write",
               "--rule", "namespace::read", env_token=root)
    assert made.returncode == 0, made.stderr
    listed = cli(running, "acl", "policy", "list", token=root)
    assert "cli-pub" in listed.stdout
    created = cli(running, "acl", "token", "create", "--policy", "cli-pub", "--description", "cli",
                  token=root, endpoint=1)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.rsplit("secret (shown once): ", 1)[1].strip()
    accessor = json.loads(created.stdout.rsplit("secret (shown once)", 1)[0])["accessor_id"]
    assert secret not in cli(running, "acl", "token", "list", token=root).stdout

    put = cli(running, "kv", "put", "app", "cli/a", "1", token=secret)  # --token
    assert put.returncode == 0, put.stderr
    got = cli(running, "kv", "get", "app", "cli/a", env_token=secret)  # $CONFIGSVC_TOKEN
    assert got.returncode == 0 and "1" in got.stdout, got.stderr
    assert cli(running, "ns", "list", token=secret).returncode == 0
    denied = cli(running, "kv", "put", "app", "elsewhere", "1", token=secret)
    assert denied.returncode == 1 and "permission_denied" in denied.stderr
    anonymous = cli(running, "kv", "get", "app", "cli/a")
    assert anonymous.returncode == 1 and "anonymous" in anonymous.stderr
    assert cli(running, "acl", "token", "create", "--policy", "cli-pub", token=secret).returncode == 1
    assert json.loads(cli(running, "acl", "token", "self", token=secret).stdout)["accessor_id"] == accessor
    # deleted
    assert cli(running, "acl", "token", "delete", accessor, token=root).returncode == 0
    wait_for(lambda: cli(running, "kv", "get", "app", "cli/a", token=secret).returncode == 1, 30,
             "the deleted token to be refused")
    # expired
    short = cli(running, "acl", "token", "create", "--policy", "cli-pub", "--ttl", "8", token=root)
    short_secret = short.stdout.rsplit("secret (shown once): ", 1)[1].strip()
    wait_for(lambda: "permission_denied" in cli(running, "kv", "get", "app", "cli/a", token=short_secret).stderr,
             60, "the token to expire")
    with Client(running.urls, token=root) as c:
        assert c.get("app", "elsewhere") is None
