"""ACLs on the native API and the Consul face, in-process (ASGI), on a real
one-node group with real storage.

Allowed, denied, anonymous, expired and deleted tokens; a denied write changes
nothing; listings are refused unless every name under them is readable; the
management API; the rule evaluation on its own (``Authorizer``); and a check
that every route of both faces is classified in the needs tables.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from configsvc.config import ConfigError, parse_config
from configsvc.http.acl import ANONYMOUS_ACCESSOR, BOOTSTRAP_ENV, Authorizer, secret_hash
from configsvc.http.acl_needs import consul_needs, native_needs
from configsvc.http.consul import build_consul_app
from configsvc.node import Node
from strong.acl import AclRule, AclToken, SetAclToken
from strong.commands import Command, encode_command
from tests.test_http_api import error, single_service

ROOT = "bootstrap-secret-0123456789"
Scenario = Callable[[Node, httpx.AsyncClient, httpx.AsyncClient], Awaitable[None]]


def as_(secret: str | None, bearer: bool = False) -> dict[str, str]:
    if secret is None:
        return {}
    return {"Authorization": f"Bearer {secret}"} if bearer else {"X-Consul-Token": secret}


ROOT_H = as_(ROOT)


@contextlib.asynccontextmanager
async def acl_node(root: Path, default_policy: str = "deny",
                   ) -> AsyncIterator[tuple[Node, httpx.AsyncClient, httpx.AsyncClient]]:
    acl = {"enabled": True, "bootstrap_token": ROOT, "default_policy": default_policy}
    async with single_service(root, acl=acl, limits={"body_max_bytes": 4096}) as (service, http):
        node = service.node
        deadline = asyncio.get_running_loop().time() + 10
        while node.strong.sm.version < 4:
            assert asyncio.get_running_loop().time() < deadline, "state machine not at version 4"
            await asyncio.sleep(0.01)  # polling an in-process condition with a deadline
        transport = httpx.ASGITransport(app=build_consul_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://n1") as consul:
            yield node, http, consul


def run(tmp_path: Path, scenario: Scenario, default_policy: str = "deny") -> None:
    async def main() -> None:
        async with acl_node(tmp_path, default_policy) as (node, http, consul):
            await scenario(node, http, consul)

    asyncio.run(main())


async def policy(http: httpx.AsyncClient, name: str, *rules: tuple[str, str, str]) -> None:
    body = {"name": name, "rules": [{"resource": r, "prefix": p, "access": a} for r, p, a in rules]}
    r = await http.post("/v1/acl/policies", json=body, headers=ROOT_H)
    assert r.status_code == 200, r.text


async def token(http: httpx.AsyncClient, *policies: str, **extra: Any) -> dict[str, Any]:
    r = await http.post("/v1/acl/tokens", json={"policies": list(policies), **extra}, headers=ROOT_H)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()["token"]
    return created


async def value(http: httpx.AsyncClient, key: str) -> bytes | None:
    r = await http.get(f"/v1/kv/app/{key}", headers=ROOT_H)
    if r.status_code == 404:
        return None
    return base64.b64decode(r.json()["kv"]["value"])


def test_allowed_denied_and_anonymous_on_the_native_api(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient, consul: httpx.AsyncClient) -> None:
        assert (await http.put("/v1/kv/app/pub/a", content=b"1", headers=ROOT_H)).status_code == 200
        assert (await http.put("/v1/kv/app/sec/a", content=b"s", headers=ROOT_H)).status_code == 200
        await policy(http, "pub-rw", ("key", "app/pub/", "write"), ("key", "app/pub/locked", "deny"))
        secret = (await token(http, "pub-rw"))["secret"]
        for bearer in (False, True):  # both ways of presenting it
            h = as_(secret, bearer)
            assert (await http.put("/v1/kv/app/pub/a", content=b"2", headers=h)).status_code == 200
            assert (await http.get("/v1/kv/app/pub/a", headers=h)).status_code == 200
            denied = await http.put("/v1/kv/app/sec/a", content=b"x", headers=h)
            assert error(denied) == (403, "permission_denied")
            assert "key:write" in denied.json()["error"]["message"]
            assert error(await http.get("/v1/kv/app/sec/a", headers=h)) == (403, "permission_denied")
            assert error(await http.put("/v1/kv/app/pub/locked", content=b"x", headers=h))[0] == 403
        assert await value(http, "sec/a") == b"s"  # the denied write changed nothing
        assert await value(http, "pub/locked") is None
        # anonymous: no token at all
        anon = await http.get("/v1/kv/app/pub/a")
        assert error(anon) == (403, "permission_denied") and "anonymous" in anon.json()["error"]["message"]
        assert error(await http.delete("/v1/kv/app/pub/a")) == (403, "permission_denied")
        assert await value(http, "pub/a") == b"2"
        # an unknown secret is the anonymous token too; a malformed header is a 401
        assert error(await http.get("/v1/kv/app/pub/a", headers=as_("nope")))[0] == 403
        assert error(await http.get("/v1/kv/app/pub/a", headers={"Authorization": "Basic x"})) == (
            401, "unauthorized")
        # public routes stay public; the admin endpoints keep their own bearer token
        assert (await http.get("/v1/cluster/health")).status_code == 200
        admin = await http.get("/v1/admin/faults", headers={"Authorization": "Basic x"})
        assert error(admin) == (403, "admin_disabled")

    run(tmp_path, scenario)


def test_listings_need_every_name_under_their_prefix(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient, consul: httpx.AsyncClient) -> None:
        await policy(http, "pub", ("key", "app/pub/", "read"), ("key", "app/pub/x/", "deny"))
        h = as_((await token(http, "pub"))["secret"])
        assert error(await http.get("/v1/kv/app", headers=h))[0] == 403
        assert error(await http.get("/v1/kv/app", params={"prefix": "pub/"}, headers=h))[0] == 403
        assert (await http.get("/v1/kv/app", params={"prefix": "pub/y"}, headers=h)).status_code == 200
        assert error(await http.get("/v1/config/app/pub", headers=h))[0] == 403
        assert error(await http.post("/v1/txn/app", json={"success": []}, headers=h))[0] == 403
        assert error(await http.get("/v1/namespaces", headers=h))[0] == 403
        # a prefix delete needs write on every key under it
        await policy(http, "w", ("key", "app/", "write"), ("key", "app/keep", "read"))
        w = as_((await token(http, "w"))["secret"])
        await http.put("/v1/kv/app/keep", content=b"k", headers=ROOT_H)
        assert error(await http.delete("/v1/kv/app/", params={"recurse": "true"}, headers=w))[0] == 403
        assert await value(http, "keep") == b"k"

    run(tmp_path, scenario)


def test_deleted_and_expired_tokens_are_anonymous(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient, consul: httpx.AsyncClient) -> None:
        await policy(http, "all-keys", ("key", "", "write"))
        made = await token(http, "all-keys")
        h = as_(made["secret"])
        assert (await http.put("/v1/kv/app/k", content=b"1", headers=h)).status_code == 200
        assert (await http.get("/v1/acl/tokens/self", headers=h)).json()["token"]["accessor_id"] == made[
            "accessor_id"]
        assert (await http.delete(f"/v1/acl/tokens/{made['accessor_id']}", headers=ROOT_H)).status_code == 200
        gone = await http.put("/v1/kv/app/k", content=b"2", headers=h)
        assert error(gone) == (403, "permission_denied") and "unknown, deleted or expired" in gone.text
        assert error(await http.get("/v1/acl/tokens/self", headers=h)) == (403, "acl_not_found")
        # expired: its expiration (proposed with the command's time) is past this node's clock
        now = int(time.time() * 1000)
        stale = AclToken("old", secret_hash("old-secret"), "", ("all-keys",), now - 1000, now - 5000)
        cmd = encode_command(Command("", 0, SetAclToken(stale, now - 5000)))
        await node.strong.propose(cmd, 5.0)
        assert node.strong.sm.acl.token("old") is not None  # stored, but void
        assert error(await http.get("/v1/kv/app/k", headers=as_("old-secret"))) == (403, "permission_denied")
        assert await value(http, "k") == b"1"
        # a token made with a ttl works until then
        ttl = await token(http, "all-keys", ttl=3600)
        assert ttl["expiration_ms"] > now
        assert (await http.get("/v1/kv/app/k", headers=as_(ttl["secret"]))).status_code == 200

    run(tmp_path, scenario)


def test_management_needs_acl_rules_and_never_shows_a_secret_again(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient, consul: httpx.AsyncClient) -> None:
        await policy(http, "reader", ("acl", "", "read"))
        await policy(http, "ops", ("namespace", "team-", "write"), ("service", "app/web", "write"))
        reader = as_((await token(http, "reader"))["secret"])
        ops = as_((await token(http, "ops", description="ops"))["secret"])
        listed = (await http.get("/v1/acl/tokens", headers=reader)).json()["tokens"]
        assert {t["description"] for t in listed} == {"", "ops"}
        assert all("secret" not in t for t in listed)
        assert error(await http.post("/v1/acl/tokens", json={}, headers=reader))[0] == 403
        assert error(await http.get("/v1/acl/tokens", headers=ops))[0] == 403
        assert error(await http.post("/v1/acl/tokens", json={"policies": ["missing"]}, headers=ROOT_H)) == (
            404, "acl_not_found")
        assert error(await http.post("/v1/acl/policies", json={"name": "x", "rules": [
            {"resource": "node", "prefix": "", "access": "read"}]}, headers=ROOT_H))[0] == 400
        # namespaces: create within the prefix only
        r = await http.post("/v1/namespaces", json={"name": "team-a", "consistency": "strong"}, headers=ops)
        assert r.status_code == 201, r.text
        r = await http.post("/v1/namespaces", json={"name": "other", "consistency": "strong"}, headers=ops)
        assert error(r)[0] == 403
        assert "other" not in {i.name for i in node.strong.sm.namespaces()}
        # services: register web, not db
        body = {"address": "10.0.0.1", "port": 80}
        assert (await http.put("/v1/services/app/web/w1", json=body, headers=ops)).status_code == 200
        assert error(await http.put("/v1/services/app/db/d1", json=body, headers=ops))[0] == 403
        assert error(await http.get("/v1/services/app", headers=ops))[0] == 403  # a listing

    run(tmp_path, scenario)


def test_the_anonymous_token_gives_the_anonymous_request_its_policies(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient, consul: httpx.AsyncClient) -> None:
        await http.put("/v1/kv/app/public/motd", content=b"hi", headers=ROOT_H)
        assert error(await http.get("/v1/kv/app/public/motd"))[0] == 403
        await policy(http, "public-read", ("key", "app/public/", "read"))
        await token(http, "public-read", accessor_id=ANONYMOUS_ACCESSOR, secret="anonymous")
        assert (await http.get("/v1/kv/app/public/motd")).status_code == 200
        assert (await http.get("/v1/kv/app/public/motd", headers=as_("unknown"))).status_code == 200
        assert error(await http.put("/v1/kv/app/public/motd", content=b"x"))[0] == 403
        assert error(await http.get("/v1/acl/tokens/self")) == (403, "acl_not_found")

    run(tmp_path, scenario)


def test_default_allow_lets_the_anonymous_token_do_all_but_manage_acls(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient, consul: httpx.AsyncClient) -> None:
        assert (await http.put("/v1/kv/app/a", content=b"1")).status_code == 200
        assert (await http.get("/v1/kv/app")).status_code == 200
        assert error(await http.get("/v1/acl/tokens"))[0] == 403
        await policy(http, "no-secrets", ("key", "app/secret/", "deny"))
        h = as_((await token(http, "no-secrets"))["secret"])
        assert (await http.get("/v1/kv/app/a", headers=h)).status_code == 200
        assert error(await http.put("/v1/kv/app/secret/x", content=b"1", headers=h))[0] == 403

    run(tmp_path, scenario, default_policy="allow")


def test_the_consul_face_checks_kv_txn_catalog_and_manages_tokens(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient, consul: httpx.AsyncClient) -> None:
        rules = 'key_prefix "app/pub/" { policy = "write" }\nservice_prefix "app/web" { policy = "write" }'
        r = await consul.put("/v1/acl/policy", json={"Name": "pub", "Rules": rules}, headers=ROOT_H)
        assert r.status_code == 200, r.text
        pid = r.json()["ID"]
        assert (await consul.get(f"/v1/acl/policy/{pid}", headers=ROOT_H)).json()["Name"] == "pub"
        r = await consul.put("/v1/acl/token", json={"Policies": [{"ID": pid}], "ExpirationTTL": "1h"},
                             headers=ROOT_H)
        assert r.status_code == 200, r.text
        made = r.json()
        h = as_(made["SecretID"])
        assert (await consul.put("/v1/kv/app/pub/a", content=b"1", headers=h)).json() is True
        assert (await consul.put("/v1/kv/app/pub/b", content=b"1", params={"token": made["SecretID"]})).json()
        assert error(await consul.put("/v1/kv/app/other", content=b"1", headers=h))[0] == 403
        assert error(await consul.get("/v1/kv/app/", params={"recurse": ""}, headers=h))[0] == 403
        ops = [{"KV": {"Verb": "set", "Key": "app/pub/c", "Value": "eA=="}},
               {"KV": {"Verb": "set", "Key": "app/other", "Value": "eA=="}}]
        assert error(await consul.put("/v1/txn", json=ops, headers=h))[0] == 403
        assert await value(http, "other") is None and await value(http, "pub/c") is None
        assert (await consul.put("/v1/txn", json=ops[:1], headers=h)).status_code == 200
        reg, ns = {"Name": "web", "ID": "web-1", "Port": 80}, {"ns": "app"}
        r = await consul.put("/v1/agent/service/register", json=reg, params=ns, headers=h)
        assert r.status_code == 200, r.text
        r = await consul.put("/v1/agent/service/register", json={"Name": "db"}, params=ns, headers=h)
        assert error(r)[0] == 403
        assert error(await consul.put("/v1/agent/service/deregister/web-1", params=ns))[0] == 403
        assert error(await consul.put("/v1/agent/check/pass/service:web-1", params=ns))[0] == 403
        assert (await consul.get("/v1/catalog/service/web", params=ns, headers=h)).json()[0]["ServiceID"] == "web-1"
        assert error(await consul.get("/v1/catalog/services", params=ns, headers=h))[0] == 403
        me = (await consul.get("/v1/acl/token/self", headers=h)).json()
        assert me["AccessorID"] == made["AccessorID"] and me["SecretID"] == ""
        assert (await consul.delete(f"/v1/acl/token/{made['AccessorID']}", headers=ROOT_H)).json() is True
        assert error(await consul.put("/v1/kv/app/pub/a", content=b"2", headers=h))[0] == 403
        assert await value(http, "pub/a") == b"1"

    run(tmp_path, scenario)


def test_acl_management_answers_acl_disabled_when_acls_are_off(tmp_path: Path) -> None:
    async def main() -> None:
        async with single_service(tmp_path) as (_, http):
            assert error(await http.get("/v1/acl/tokens")) == (401, "acl_disabled")
            assert (await http.put("/v1/kv/app/a", content=b"1")).status_code == 200

    asyncio.run(main())


def test_every_route_of_both_faces_is_classified(tmp_path: Path) -> None:
    """A route missing from a needs table would need acl:write (fail closed): this
    names any such route, so adding one means deciding what it touches."""
    from configsvc.http.app import build_app

    async def main() -> None:
        async with acl_node(tmp_path) as (node, _, _):
            for app, needs in ((build_app(node), native_needs(node)),
                               (build_consul_app(node), consul_needs(node))):
                paths = {r.path for r in app.routes if isinstance(r, Route)}
                assert paths - set(needs) == set()
                assert set(needs) - paths == set()

    asyncio.run(main())


@pytest.mark.parametrize(("rules", "resource", "name", "access", "every", "allowed"), [
    ([("key", "app/", "read")], "key", "app/x", "read", False, True),
    ([("key", "app/", "read")], "key", "app/x", "write", False, False),
    ([("key", "app/", "write")], "key", "app/x", "read", False, True),
    ([("key", "app/", "write"), ("key", "app/s", "deny")], "key", "app/sx", "read", False, False),
    ([("key", "app/", "deny"), ("key", "app/ok", "read")], "key", "app/ok/1", "read", False, True),
    ([("key", "", "write")], "service", "app/web", "read", False, False),
    ([("key", "app/", "write"), ("key", "app/s", "deny")], "key", "app/", "read", True, False),
    ([("key", "app/", "write"), ("key", "app/s", "write")], "key", "app/", "write", True, True),
    ([("key", "app/s", "write")], "key", "app/", "read", True, False),
])
def test_longest_prefix_wins_and_every_needs_all_below(rules: list[tuple[str, str, str]], resource: str,
                                                         name: str, access: str, every: bool,
                                                         allowed: bool) -> None:
    auth = Authorizer([AclRule(*r) for r in rules], management=False, default_allow=False)
    check = auth.allows_every if every else auth.allows
    assert check(resource, name, access) is allowed


def test_deny_beats_write_on_equal_prefixes_from_two_policies() -> None:
    both = Authorizer([AclRule("key", "a/", "write"), AclRule("key", "a/", "deny")],
                      management=False, default_allow=True)
    assert not both.allows("key", "a/b", "read")
    assert Authorizer([], management=False, default_allow=True).allows("key", "x", "write")
    assert not Authorizer([], management=False, default_allow=True).allows("acl", "", "read")
    assert Authorizer([], management=True, default_allow=False).allows("acl", "", "write")


def test_the_acl_section_defaults_to_off_and_deny_and_needs_version_4() -> None:
    base = {"nodes": [{"id": "n1", "api_port": 1, "peer_port": 2}]}
    config = parse_config(base)
    assert (config.acl.enabled, config.acl.default_policy, config.state_machine.version) == (False, "deny", 5)
    with pytest.raises(ConfigError, match=r"acl\.enabled needs state_machine\.version 4"):
        parse_config(base | {"acl": {"enabled": True}, "state_machine": {"version": 3}})
    with pytest.raises(ConfigError, match="bootstrap_token"):
        parse_config(base | {"acl": {"enabled": True, "bootstrap_token": "short"}})
    with pytest.raises(ConfigError, match="default_policy"):
        parse_config(base | {"acl": {"default_policy": "maybe"}})


class _Sup:
    """The part of ``Supervisor`` that ``_acl_bootstrap`` uses (the real one starts nodes)."""

    def __init__(self) -> None:
        self.env: dict[str, str] = {}

    def set_env(self, name: str, value: str) -> None:
        self.env[name] = value


def test_cluster_up_acl_takes_the_environments_token_and_never_prints_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from configsvc.lab.cluster_up import _acl_bootstrap

    monkeypatch.setenv(BOOTSTRAP_ENV, ROOT)
    sup = _Sup()
    notice = _acl_bootstrap(sup)  # type: ignore[arg-type]
    assert sup.env == {BOOTSTRAP_ENV: ROOT} and ROOT not in notice
    monkeypatch.delenv(BOOTSTRAP_ENV)
    fresh = _Sup()
    notice = _acl_bootstrap(fresh)  # type: ignore[arg-type]
    generated = fresh.env[BOOTSTRAP_ENV]
    assert len(generated) >= 16 and generated != ROOT and generated in notice
