"""``/v1/acl/*`` on the Consul face: tokens and policies with Consul's field names.

Over ``configsvc.http.acl_routes.AclApi`` (the same checks, the same log ops as
the native API). What maps where:

    Token: AccessorID, SecretID (create only), Description,
           Policies [{ID} or {Name}], ExpirationTTL ("1h") or ExpirationTime
    Policy: ID (derived from Name), Name, Description, Rules (HCL or JSON)

Rules: ``key_prefix``, ``service_prefix`` and ``namespace_prefix`` blocks with
``policy = "read"|"write"|"deny"``, and ``acl = "read"|"write"|"deny"``. Any
other rule kind (``node_prefix``, ``operator``, exact ``key``, ...) is a ``400``
naming it: this store has no such resource, and silently ignoring a rule
would grant or deny something other than what its author meant. A secret
is never returned after creation (``SecretID`` is ``""`` on reads).
"""

from __future__ import annotations

import json
import time
from typing import Any

import hcl  # type: ignore[import-untyped, unused-ignore]
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from configsvc.http.acl_routes import (
    ACL_READ,
    ACL_WRITE,
    AclApi,
    fold_fields,
    policy_id,
    rfc3339,
    rfc3339_ms,
    text_field,
)
from configsvc.http.consul.kv import consul_json
from configsvc.http.consul.params import parse_duration
from configsvc.http.errors import ApiError, bad_request
from strong.acl import (
    ACL,
    MANAGEMENT_POLICY,
    AclPolicy,
    AclRule,
    AclToken,
    DeleteAclPolicy,
    DeleteAclToken,
    SetAclPolicy,
    SetAclToken,
)

_PREFIX_RULES = {"key_prefix": "key", "service_prefix": "service", "namespace_prefix": "namespace"}


def parse_rules(text: str) -> tuple[AclRule, ...]:
    """Consul's policy rules (HCL or JSON) as ``AclRule``s; raises ``ApiError`` 400."""
    if text.lstrip().startswith('"'):  # a JSON string holding the rules (py-consul sends so)
        try:
            text = json.loads(text)
        except ValueError:
            raise bad_request("Rules is not HCL or JSON") from None
        if not isinstance(text, str):
            raise bad_request("Rules must be HCL or JSON text")
    try:
        parsed = hcl.loads(text) if text.strip() else {}
    except Exception as exc:  # pyhcl raises ValueError and its own lexer errors
        raise bad_request(f"Rules is not valid HCL or JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise bad_request("Rules must hold rule blocks")
    rules: list[AclRule] = []
    try:
        for kind, body in parsed.items():
            if kind == ACL:
                rules.append(AclRule(ACL, "", body))
            elif kind in _PREFIX_RULES and isinstance(body, dict):
                for prefix, block in body.items():
                    access = block.get("policy") if isinstance(block, dict) else None
                    rules.append(AclRule(_PREFIX_RULES[kind], prefix, str(access)))
            else:
                raise bad_request(f"rule {kind!r:.60} is not supported here (supported: acl, "
                                  f"{', '.join(_PREFIX_RULES)})")
        return tuple(rules)
    except (ValueError, TypeError) as exc:
        raise bad_request(f"invalid rule: {exc}") from None


def render_rules(rules: tuple[AclRule, ...]) -> str:
    """HCL for ``rules`` (``parse_rules`` reads it back)."""
    kinds = {v: k for k, v in _PREFIX_RULES.items()}
    lines = []
    for r in rules:
        if r.resource == ACL:
            lines.append(f"acl = {json.dumps(r.access)}")
        else:
            lines.append(f"{kinds[r.resource]} {json.dumps(r.prefix)} {{ policy = {json.dumps(r.access)} }}")
    return "\n".join(lines)


class ConsulAcl:
    def __init__(self, api: AclApi) -> None:
        self.api = api
        self.node = api.node

    def _policy_name(self, link: Any) -> str:
        spec = fold_fields(link, "a policy link")
        name, pid = spec.get("name"), spec.get("id")
        if isinstance(name, str) and name:
            return name
        if isinstance(pid, str) and pid:
            if pid == policy_id(MANAGEMENT_POLICY) or pid == "00000000-0000-0000-0000-000000000001":
                return MANAGEMENT_POLICY
            for policy in self.node.strong.sm.acl.state().policies:
                if policy_id(policy.name) == pid:
                    return policy.name
            raise ApiError(400, "acl_not_found", f"no policy with ID {pid!r}")
        raise bad_request("a policy link is {\"ID\": ...} or {\"Name\": ...}")

    def _token_json(self, t: AclToken | None, secret: str = "") -> dict[str, Any]:
        if t is None:
            return {"AccessorID": "bootstrap", "SecretID": "", "Description": "bootstrap token",
                    "Policies": [{"ID": policy_id(MANAGEMENT_POLICY), "Name": MANAGEMENT_POLICY}],
                    "Local": False, "CreateIndex": 0, "ModifyIndex": 0}
        out: dict[str, Any] = {
            "AccessorID": t.accessor_id, "SecretID": secret, "Description": t.description,
            "Policies": [{"ID": policy_id(n), "Name": n} for n in t.policies], "Local": False,
            "CreateTime": rfc3339(t.create_ms), "CreateIndex": 0, "ModifyIndex": 0,
        }
        if t.expiration_ms:
            out["ExpirationTime"] = rfc3339(t.expiration_ms)
        return out

    @staticmethod
    def _policy_json(p: AclPolicy) -> dict[str, Any]:
        return {"ID": policy_id(p.name), "Name": p.name, "Description": p.description,
                "Rules": render_rules(p.rules), "Datacenters": [], "CreateIndex": 0, "ModifyIndex": 0}

    def _expiration(self, spec: dict[str, Any], now_ms: int) -> int | None:
        ttl, at = spec.get("expirationttl"), spec.get("expirationtime")
        if ttl and at:
            raise bad_request("ExpirationTTL and ExpirationTime exclude each other")
        if ttl:
            try:
                seconds = parse_duration(text_field(ttl, "ExpirationTTL"))
            except ValueError as exc:
                raise bad_request(f"ExpirationTTL: {exc}") from None
            return now_ms + max(1, round(seconds * 1000)) if seconds else 0
        if at:
            return rfc3339_ms(text_field(at, "ExpirationTime"))
        return None

    async def _spec(self, request: Request) -> dict[str, Any]:
        return fold_fields(await self.api.body(request), "the body")

    # ---- tokens ----------------------------------------------------------------

    async def create_token(self, request: Request) -> Response:
        await self.api.check(request, ACL_WRITE)
        spec = await self._spec(request)
        now_ms = int(time.time() * 1000)
        links = spec.get("policies") or []
        if not isinstance(links, list):
            raise bad_request("Policies must be a list of links")
        token, secret = self.api.new_token(
            text_field(spec.get("accessorid"), "AccessorID", nullable=True) or None,
            text_field(spec.get("secretid"), "SecretID", nullable=True) or None,
            text_field(spec.get("description"), "Description", nullable=True),
            tuple(self._policy_name(link) for link in links),
            self._expiration(spec, now_ms) or 0, now_ms)
        forwarded = await self.api.apply(request, lambda: SetAclToken(token, now_ms))
        return forwarded or consul_json(self._token_json(token, secret))

    async def token_self(self, request: Request) -> Response:
        return consul_json(self._token_json(await self.api.self_token(request)))

    async def read_token(self, request: Request) -> Response:
        await self.api.check(request, ACL_READ)
        return consul_json(self._token_json(self.api.token(request.path_params["accessor_id"])))

    async def update_token(self, request: Request) -> Response:
        await self.api.check(request, ACL_WRITE)
        spec = await self._spec(request)
        now_ms = int(time.time() * 1000)
        old = self.api.token(request.path_params["accessor_id"])
        links = spec.get("policies")
        if links is not None and not isinstance(links, list):
            raise bad_request("Policies must be a list of links")
        expiration = self._expiration(spec, now_ms)
        token = self.api.updated(
            old.accessor_id, text_field(spec.get("description", old.description), "Description", nullable=True),
            old.policies if links is None else tuple(self._policy_name(link) for link in links),
            old.expiration_ms if expiration is None else expiration)
        forwarded = await self.api.apply(request, lambda: SetAclToken(token, now_ms))
        return forwarded or consul_json(self._token_json(token))

    async def delete_token(self, request: Request) -> Response:
        await self.api.check(request, ACL_WRITE)
        accessor_id = request.path_params["accessor_id"]
        return await self.api.apply(request, lambda: DeleteAclToken(accessor_id)) or consul_json(True)

    async def list_tokens(self, request: Request) -> Response:
        await self.api.check(request, ACL_READ)
        return consul_json([self._token_json(t) for t in self.node.strong.sm.acl.state().tokens])

    # ---- policies --------------------------------------------------------------

    def _by_id(self, pid: str) -> AclPolicy:
        for policy in self.node.strong.sm.acl.state().policies:
            if policy_id(policy.name) == pid:
                return policy
        raise ApiError(404, "acl_not_found", f"no policy with ID {pid!r}")

    async def set_policy(self, request: Request) -> Response:
        await self.api.check(request, ACL_WRITE)
        spec = await self._spec(request)
        rules = parse_rules(text_field(spec.get("rules"), "Rules", nullable=True))
        name = text_field(spec.get("name"), "Name", nullable=True)
        if "id" in request.path_params:
            old = self._by_id(request.path_params["id"])
            if name and name != old.name:
                raise bad_request("renaming a policy is not supported: create one and relink")
            name = old.name
        description = text_field(spec.get("description"), "Description", nullable=True)

        def policy() -> SetAclPolicy:
            return SetAclPolicy(AclPolicy(name, description, rules))

        return await self.api.apply(request, policy) or consul_json(self._policy_json(policy().policy))

    async def read_policy(self, request: Request) -> Response:
        await self.api.check(request, ACL_READ)
        return consul_json(self._policy_json(self._by_id(request.path_params["id"])))

    async def read_policy_by_name(self, request: Request) -> Response:
        await self.api.check(request, ACL_READ)
        return consul_json(self._policy_json(self.api.policy(request.path_params["name"])))

    async def delete_policy(self, request: Request) -> Response:
        await self.api.check(request, ACL_WRITE)
        policy = self._by_id(request.path_params["id"])
        return await self.api.apply(request, lambda: DeleteAclPolicy(policy.name)) or consul_json(True)

    async def list_policies(self, request: Request) -> Response:
        await self.api.check(request, ACL_READ)
        policies = self.node.strong.sm.acl.state().policies
        return consul_json([self._policy_json(p) for p in policies])

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/acl/token", self.create_token, methods=["PUT"]),
            Route("/v1/acl/token/self", self.token_self, methods=["GET"]),
            Route("/v1/acl/token/{accessor_id}", self.read_token, methods=["GET"]),
            Route("/v1/acl/token/{accessor_id}", self.update_token, methods=["PUT"]),
            Route("/v1/acl/token/{accessor_id}", self.delete_token, methods=["DELETE"]),
            Route("/v1/acl/tokens", self.list_tokens, methods=["GET"]),
            Route("/v1/acl/policy", self.set_policy, methods=["PUT"]),
            Route("/v1/acl/policy/name/{name}", self.read_policy_by_name, methods=["GET"]),
            Route("/v1/acl/policy/{id}", self.read_policy, methods=["GET"]),
            Route("/v1/acl/policy/{id}", self.set_policy, methods=["PUT"]),
            Route("/v1/acl/policy/{id}", self.delete_policy, methods=["DELETE"]),
            Route("/v1/acl/policies", self.list_policies, methods=["GET"]),
        ]
