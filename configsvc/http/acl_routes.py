"""The ACL management API: tokens and policies, on both faces.

Native (JSON, snake_case)::

    GET    /v1/acl/policies                 {"policies": [policy]}            acl:read
    POST   /v1/acl/policies                 create or replace a policy        acl:write
    GET    /v1/acl/policies/{name}          {"policy": policy}                acl:read
    DELETE /v1/acl/policies/{name}                                            acl:write
    GET    /v1/acl/tokens                   {"tokens": [token]}               acl:read
    POST   /v1/acl/tokens                   {"token": token + "secret"}       acl:write
    GET    /v1/acl/tokens/self              the request's own token           any live token
    GET    /v1/acl/tokens/{accessor_id}     {"token": token}                  acl:read
    PUT    /v1/acl/tokens/{accessor_id}     update description/policies/ttl   acl:write
    DELETE /v1/acl/tokens/{accessor_id}                                       acl:write

    policy = {"name", "description", "rules": [{"resource", "prefix", "access"}]}
    token  = {"accessor_id", "description", "policies", "expiration_ms", "create_ms"}

Consul face: ``PUT /v1/acl/token``, ``GET /v1/acl/token/self``, ``GET|PUT|DELETE
/v1/acl/token/{AccessorID}``, ``GET /v1/acl/tokens``, ``PUT /v1/acl/policy``,
``GET|PUT|DELETE /v1/acl/policy/{ID}``, ``GET /v1/acl/policy/name/{Name}``,
``GET /v1/acl/policies``, with Consul's field names; a policy's ``Rules`` are
Consul's HCL (or JSON): ``key_prefix``, ``service_prefix``, ``namespace_prefix``
blocks with a ``policy``, and ``acl = "read"|"write"``.

Invariants: a secret is shown once, in the answer that created the token, and
never again (only its SHA-256 is stored); accessor ids and secrets are random
UUIDs unless the request gives them; a policy's Consul ``ID`` is a UUID derived
from its name. Every write goes through the strong log (``strong.acl``).
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from configsvc.http.acl import Need, require, secret_hash
from configsvc.http.errors import ApiError, bad_request, json_object
from configsvc.http.node_requests import read_body
from configsvc.http.strong_api import StrongApi
from strong.acl import (
    ACL,
    MANAGEMENT_POLICY,
    READ,
    RESOURCES,
    WRITE,
    AclOp,
    AclPolicy,
    AclRule,
    AclToken,
    DeleteAclPolicy,
    DeleteAclToken,
    SetAclPolicy,
    SetAclToken,
)
from strong.results import ErrorCode, ErrorResult

if TYPE_CHECKING:
    from configsvc.node import Node

_POLICY_NS = uuid.UUID("6f1c3e2a-5d1b-4f0e-9a57-3c0a3f4c1d2e")
_STATUS = {ErrorCode.ACL_NOT_FOUND: 404, ErrorCode.ACL_CONFLICT: 409, ErrorCode.ACL_INVALID: 400,
           ErrorCode.UNSUPPORTED_IN_VERSION: 409}
ACL_READ = Need(ACL, "", READ)
ACL_WRITE = Need(ACL, "", WRITE)


def policy_id(name: str) -> str:
    """The Consul ``ID`` of policy ``name`` (stable: derived from the name)."""
    return str(uuid.uuid5(_POLICY_NS, name))


def rfc3339(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat().replace("+00:00", "Z")


def rfc3339_ms(text: str) -> int:
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"ExpirationTime {text!r:.60} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise bad_request("ExpirationTime needs a time zone")
    return int(moment.timestamp() * 1000)


def fold_fields(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise bad_request(f"{where} must be a JSON object")
    return {str(k).lower().replace("_", ""): v for k, v in obj.items()}


def text_field(value: Any, what: str, *, nullable: bool = False) -> str:
    """``value`` if a string ("" if absent: the caller's default; ``nullable``: null too)."""
    if value is None and nullable:
        return ""
    if not isinstance(value, str):
        raise bad_request(f"{what} must be a string")
    return value


def _given(spec: dict[str, Any], name: str) -> str | None:
    """An optional field that, when present, is a non-empty string."""
    if name not in spec:
        return None
    value = spec[name]
    if not isinstance(value, str) or not value:
        raise bad_request(f"{name} must be a non-empty string")
    return value


def _names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise bad_request(f"{what} must be a list of names")
    return tuple(value)


class AclApi:
    """The handlers of both faces over one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.strong = StrongApi(node)

    # ---- shared --------------------------------------------------------------

    async def check(self, request: Request, need: Need) -> None:
        """``require`` the need; with ACLs off, ``401 acl_disabled`` (as Consul answers)."""
        if not self.node.config.acl.enabled:
            raise ApiError(401, "acl_disabled", "ACL support disabled (acl.enabled is false)")
        await require(self.node, request, need)

    async def apply(self, request: Request, make: Callable[[], AclOp]) -> Response | None:
        """Propose the op ``make()`` builds (a ``ValueError`` building it: 400). None once
        applied; the leader's whole answer when forwarded; an ``ErrorResult`` raises."""
        try:
            op = make()
        except ValueError as exc:
            raise bad_request(f"{exc} (resources: {', '.join(RESOURCES)})") from None
        outcome = await self.strong.propose(request, op)
        if isinstance(outcome, Response):
            return outcome
        if isinstance(outcome, ErrorResult):
            raise ApiError(_STATUS.get(outcome.code, 400), outcome.code, outcome.message)
        return None

    async def body(self, request: Request) -> dict[str, Any]:
        return json_object(await read_body(request, self.node.config.limits.body_max_bytes,
                                           "body_too_large"))

    def token(self, accessor_id: str) -> AclToken:
        token = self.node.strong.sm.acl.token(accessor_id)
        if token is None:
            raise ApiError(404, "acl_not_found", f"no token {accessor_id!r}")
        return token

    def policy(self, name: str) -> AclPolicy:
        policy = self.node.strong.sm.acl.policy(name)
        if policy is None:
            raise ApiError(404, "acl_not_found", f"no policy {name!r}")
        return policy

    def new_token(self, accessor_id: str | None, secret: str | None, description: str,
                   policies: tuple[str, ...], expiration_ms: int, now_ms: int) -> tuple[AclToken, str]:
        secret = secret or str(uuid.uuid4())
        try:
            token = AclToken(accessor_id or str(uuid.uuid4()), secret_hash(secret), description,
                             policies, expiration_ms, now_ms)
        except ValueError as exc:
            raise bad_request(f"invalid token: {exc}") from None
        return token, secret

    def updated(self, accessor_id: str, description: str, policies: tuple[str, ...],
                 expiration_ms: int) -> AclToken:
        old = self.token(accessor_id)
        try:
            return AclToken(old.accessor_id, old.secret_hash, description, policies, expiration_ms,
                            old.create_ms)
        except ValueError as exc:
            raise bad_request(f"invalid token: {exc}") from None

    async def self_token(self, request: Request) -> AclToken | None:
        """The request's own live token (None: the bootstrap token); 403 without one."""
        if not self.node.config.acl.enabled:
            raise ApiError(401, "acl_disabled", "ACL support disabled (acl.enabled is false)")
        identity = await require(self.node, request)
        if identity.token is not None or identity.kind == "bootstrap":
            return identity.token
        raise ApiError(403, "acl_not_found", "ACL not found: no live token was given")

    # ---- native ----------------------------------------------------------------

    @staticmethod
    def _policy_json(p: AclPolicy) -> dict[str, Any]:
        return {"name": p.name, "description": p.description,
                "rules": [{"resource": r.resource, "prefix": r.prefix, "access": r.access}
                          for r in p.rules]}

    @staticmethod
    def _token_json(t: AclToken | None) -> dict[str, Any]:
        if t is None:
            return {"accessor_id": "bootstrap", "description": "the bootstrap token (configuration)",
                    "policies": [MANAGEMENT_POLICY], "expiration_ms": 0, "create_ms": 0}
        return {"accessor_id": t.accessor_id, "description": t.description,
                "policies": list(t.policies), "expiration_ms": t.expiration_ms,
                "create_ms": t.create_ms}

    @staticmethod
    def _expiration(spec: dict[str, Any], now_ms: int) -> int:
        if "ttl" not in spec:
            return 0
        ttl = spec["ttl"]
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= 10**9:
            raise bad_request("ttl must be a positive number of seconds")
        return now_ms + max(1, round(ttl * 1000))

    async def list_policies(self, request: Request) -> Response:
        await self.check(request, ACL_READ)
        policies = self.node.strong.sm.acl.state().policies
        return JSONResponse({"policies": [self._policy_json(p) for p in policies]})

    async def set_policy(self, request: Request) -> Response:
        await self.check(request, ACL_WRITE)
        spec = await self.body(request)
        unknown = sorted(set(spec) - {"name", "description", "rules"})
        if unknown:
            raise bad_request(f"unknown field(s) {', '.join(unknown)} (known: description, name, rules)")
        rules = spec.get("rules", [])
        if not isinstance(rules, list) or not all(
            isinstance(r, dict) and set(r) <= {"resource", "prefix", "access"} for r in rules
        ):
            raise bad_request("rules must be a list of {resource, prefix, access}")
        def policy() -> SetAclPolicy:
            return SetAclPolicy(AclPolicy(
                text_field(spec.get("name"), "name"), text_field(spec.get("description", ""), "description"),
                tuple(AclRule(r.get("resource"), r.get("prefix", ""), r.get("access")) for r in rules)))

        forwarded = await self.apply(request, policy)
        return forwarded or JSONResponse({"policy": self._policy_json(policy().policy)})

    async def read_policy(self, request: Request) -> Response:
        await self.check(request, ACL_READ)
        return JSONResponse({"policy": self._policy_json(self.policy(request.path_params["name"]))})

    async def delete_policy(self, request: Request) -> Response:
        await self.check(request, ACL_WRITE)
        name = request.path_params["name"]
        forwarded = await self.apply(request, lambda: DeleteAclPolicy(name))
        return forwarded or JSONResponse({"deleted": name})

    async def list_tokens(self, request: Request) -> Response:
        await self.check(request, ACL_READ)
        tokens = self.node.strong.sm.acl.state().tokens
        return JSONResponse({"tokens": [self._token_json(t) for t in tokens]})

    async def create_token(self, request: Request) -> Response:
        await self.check(request, ACL_WRITE)
        spec = await self.body(request)
        unknown = sorted(set(spec) - {"accessor_id", "secret", "description", "policies", "ttl"})
        if unknown:
            raise bad_request(f"unknown field(s) {', '.join(unknown)} "
                              "(known: accessor_id, description, policies, secret, ttl)")
        now_ms = int(time.time() * 1000)
        token, secret = self.new_token(
            _given(spec, "accessor_id"), _given(spec, "secret"),
            text_field(spec.get("description", ""), "description"), _names(spec.get("policies", []), "policies"),
            self._expiration(spec, now_ms), now_ms)
        forwarded = await self.apply(request, lambda: SetAclToken(token, now_ms))
        return forwarded or JSONResponse({"token": {**self._token_json(token), "secret": secret}},
                                         status_code=201)

    async def token_self(self, request: Request) -> Response:
        return JSONResponse({"token": self._token_json(await self.self_token(request))})

    async def read_token(self, request: Request) -> Response:
        await self.check(request, ACL_READ)
        return JSONResponse({"token": self._token_json(self.token(request.path_params["accessor_id"]))})

    async def update_token(self, request: Request) -> Response:
        await self.check(request, ACL_WRITE)
        spec = await self.body(request)
        unknown = sorted(set(spec) - {"description", "policies", "ttl"})
        if unknown:
            raise bad_request(f"unknown field(s) {', '.join(unknown)} (known: description, policies, ttl)")
        now_ms = int(time.time() * 1000)
        old = self.token(request.path_params["accessor_id"])
        token = self.updated(
            old.accessor_id, text_field(spec.get("description", old.description), "description"),
            _names(spec.get("policies", list(old.policies)), "policies"),
            self._expiration(spec, now_ms) if "ttl" in spec else old.expiration_ms)
        forwarded = await self.apply(request, lambda: SetAclToken(token, now_ms))
        return forwarded or JSONResponse({"token": self._token_json(token)})

    async def delete_token(self, request: Request) -> Response:
        await self.check(request, ACL_WRITE)
        accessor_id = request.path_params["accessor_id"]
        forwarded = await self.apply(request, lambda: DeleteAclToken(accessor_id))
        return forwarded or JSONResponse({"deleted": accessor_id})

    def native_routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/acl/policies", self.list_policies, methods=["GET"]),
            Route("/v1/acl/policies", self.set_policy, methods=["POST"]),
            Route("/v1/acl/policies/{name}", self.read_policy, methods=["GET"]),
            Route("/v1/acl/policies/{name}", self.delete_policy, methods=["DELETE"]),
            Route("/v1/acl/tokens", self.list_tokens, methods=["GET"]),
            Route("/v1/acl/tokens", self.create_token, methods=["POST"]),
            Route("/v1/acl/tokens/self", self.token_self, methods=["GET"]),
            Route("/v1/acl/tokens/{accessor_id}", self.read_token, methods=["GET"]),
            Route("/v1/acl/tokens/{accessor_id}", self.update_token, methods=["PUT"]),
            Route("/v1/acl/tokens/{accessor_id}", self.delete_token, methods=["DELETE"]),
        ]
