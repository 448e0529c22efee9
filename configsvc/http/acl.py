"""Authorization: who a request is (its token) and what its rules let it do.

When ``acl.enabled`` is set, every route of both API faces runs behind
``guard``: before the handler runs, the resources the request touches
(``Need``s, from the route's entry in a needs table) are checked against the
request's token, and a request lacking any is answered ``403
permission_denied`` — the handler never runs, so a denied write changes
nothing. Rules of the model (docs/acl.md):

1. The token. ``X-Consul-Token: <secret>`` or ``Authorization: Bearer
   <secret>`` (and, on the Consul face, ``?token=``). A malformed
   ``Authorization`` header is ``401 unauthorized``. No token, or a secret no
   live token has (unknown, deleted, expired), is the *anonymous* request: the
   rules of the token with accessor id ``ANONYMOUS_ACCESSOR`` (Consul's
   anonymous token) if one was created, else no rules at all.
2. Lookup reads this node's applied state (``StateMachine.acl``), which may
   lag the leader slightly: a token just deleted may still work on a lagging
   follower for that long. A secret not found locally is looked up again
   after one read barrier (so a token works on every node as soon as its
   creation is acknowledged). Expiry is checked against this node's wall
   clock on every request (and the log drops expired tokens, ``strong.acl``).
3. The bootstrap token (``acl.bootstrap_token`` or
   ``$CONFIGSVC_ACL_BOOTSTRAP_TOKEN``) is configuration, not state: every node
   accepts it as a management token. Secrets are compared as SHA-256 digests
   with ``hmac.compare_digest``.
4. Evaluation. For a resource name (``<namespace>/<key>``,
   ``<namespace>/<service>``, a namespace name), the rule with the longest
   matching prefix among all the token's policies decides; on equal prefixes
   ``deny`` beats ``write`` beats ``read``. ``write`` implies ``read``. No
   matching rule: ``acl.default_policy``. ``acl`` rules are never defaulted
   (ACL management needs an explicit rule or a management token).
5. Listings (key ranges, prefix watches, config documents, service lists,
   the namespace list, recursive deletes, native transactions) are refused,
   not filtered: they need the access on *every* name under their prefix —
   the prefix's own rule and every longer rule below it must grant it.
6. A route missing from the needs table needs ``acl:write`` (fail closed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from configsvc.http.errors import ApiError
from configsvc.http.forwarding import face_of
from configsvc.http.node_requests import registry_barrier
from strong.acl import ACL, DENY, MANAGEMENT_POLICY, READ, WRITE, AclRule, AclToken

if TYPE_CHECKING:
    from configsvc.node import Node

__all__ = [
    "ANONYMOUS_ACCESSOR",
    "BOOTSTRAP_ENV",
    "PUBLIC",
    "Authorizer",
    "Identity",
    "Need",
    "NeedFn",
    "bootstrap_secret",
    "guard",
    "identify",
    "json_body",
    "request_secret",
    "require",
    "secret_hash",
]

BOOTSTRAP_ENV = "CONFIGSVC_ACL_BOOTSTRAP_TOKEN"
#: the accessor id of the token whose policies the anonymous request gets (Consul's)
ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"
CONSUL_HEADER = "x-consul-token"
_ORDER = {READ: 0, WRITE: 1, DENY: 2}


@dataclass(frozen=True, slots=True)
class Need:
    """``access`` to ``resource`` ``name`` — or, with ``every``, to every name under
    the prefix ``name`` (rule 5)."""

    resource: str
    name: str
    access: str
    every: bool = False


NeedFn = Callable[[Request], Awaitable[Sequence[Need]]]


async def _public(request: Request) -> Sequence[Need]:
    return ()


#: the needs of a route anyone may call (health, the OpenAPI description, ...)
PUBLIC: NeedFn = _public


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def bootstrap_secret(node: Node) -> str | None:
    """The configured bootstrap token, else ``$CONFIGSVC_ACL_BOOTSTRAP_TOKEN``."""
    return node.config.acl.bootstrap_token or os.environ.get(BOOTSTRAP_ENV) or None


def presented_secret(headers: Headers, query_token: str | None = None) -> str | None:
    """The token secret in ``headers`` (``X-Consul-Token``, else ``Authorization:
    Bearer``), else ``query_token`` (the Consul face's ``?token=``), or None
    (rule 1); raises ``ApiError`` 401 for an ``Authorization`` header that is not
    ``Bearer <secret>``. No lookup, no IO: the rate limiter calls it on every request."""
    secret = headers.get(CONSUL_HEADER)
    if secret:
        return secret
    auth = headers.get("authorization")
    if auth is not None:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "unauthorized", "the Authorization header must be 'Bearer <token>'")
        return value.strip()
    return query_token or None


def request_secret(request: Request) -> str | None:
    """``presented_secret`` of a request, with ``?token=`` on the Consul face only."""
    query = request.query_params.get("token") if face_of(request) == "consul" else None
    return presented_secret(request.headers, query)


def known_secret(node: Node, secret: str) -> bool:
    """Whether ``secret`` is the bootstrap token or a live token in this node's
    applied state (no read barrier: the rate limiter's question). With ACLs off
    no secret is known: a token means nothing then."""
    if not node.config.acl.enabled:
        return False
    digest = secret_hash(secret)
    if _is_bootstrap(node, digest):
        return True
    if node.corrupt is not None or node._strong is None:  # not serving: no token table
        return False
    return _live(node, digest) is not None


def _is_bootstrap(node: Node, digest: bytes) -> bool:
    """Whether ``digest`` is the bootstrap token's (compared in constant time)."""
    bootstrap = bootstrap_secret(node)
    return bootstrap is not None and hmac.compare_digest(digest, secret_hash(bootstrap))


class Authorizer:
    """The rules of one token, evaluated as rule 4 says."""

    def __init__(self, rules: Iterable[AclRule], *, management: bool, default_allow: bool) -> None:
        self.rules = tuple(rules)
        self.management = management
        self.default_allow = default_allow

    def _decision(self, resource: str, name: str) -> str | None:
        best: AclRule | None = None
        for rule in self.rules:
            if rule.resource != resource or not name.startswith(rule.prefix):
                continue
            if (best is None or len(rule.prefix) > len(best.prefix)
                    or (len(rule.prefix) == len(best.prefix)
                        and _ORDER[rule.access] > _ORDER[best.access])):
                best = rule
        return None if best is None else best.access

    @staticmethod
    def _grants(decision: str, access: str) -> bool:
        return decision == WRITE or (decision == READ and access == READ)

    def allows(self, resource: str, name: str, access: str) -> bool:
        if self.management:
            return True
        decision = self._decision(resource, name)
        if decision is None:
            return self.default_allow and resource != ACL
        return self._grants(decision, access)

    def allows_every(self, resource: str, prefix: str, access: str) -> bool:
        """``access`` to every name starting with ``prefix`` (rule 5)."""
        if not self.allows(resource, prefix, access):
            return False
        return all(
            self.allows(resource, rule.prefix, access)
            for rule in self.rules
            if rule.resource == resource and rule.prefix.startswith(prefix)
        )

    def check(self, need: Need) -> bool:
        if need.every:
            return self.allows_every(need.resource, need.name, need.access)
        return self.allows(need.resource, need.name, need.access)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is: its token (None: anonymous or bootstrap) and its rules."""

    token: AclToken | None
    authorizer: Authorizer
    #: "token", "bootstrap", "anonymous" (no token given) or "not_found"
    kind: str

    @property
    def accessor_id(self) -> str:
        if self.token is not None:
            return self.token.accessor_id
        return self.kind


def _identity(node: Node, token: AclToken | None, kind: str) -> Identity:
    default_allow = node.config.acl.default_policy == "allow"
    acl = node.strong.sm.acl
    linked = token
    if token is None and kind != "bootstrap":  # the anonymous request: rule 1
        anonymous = acl.token(ANONYMOUS_ACCESSOR)
        if anonymous is not None and not anonymous.expired(int(time.time() * 1000)):
            linked = anonymous
    if linked is None:
        management = kind == "bootstrap"
        return Identity(None, Authorizer((), management=management, default_allow=default_allow), kind)
    rules: list[AclRule] = []
    management = False
    for name in linked.policies:
        if name == MANAGEMENT_POLICY:
            management = True
        policy = acl.policy(name)
        if policy is not None:
            rules.extend(policy.rules)
    return Identity(token, Authorizer(rules, management=management, default_allow=default_allow), kind)


def _live(node: Node, digest: bytes) -> AclToken | None:
    token = node.strong.sm.acl.token_by_hash(digest)
    if token is None or token.expired(int(time.time() * 1000)):
        return None
    return token


async def identify(node: Node, request: Request) -> Identity:
    """The identity of ``request`` (rules 1-3); cached on ``request.state``."""
    cached = getattr(request.state, "acl_identity", None)
    if isinstance(cached, Identity):
        return cached
    secret = request_secret(request)
    identity: Identity
    if secret is None:
        identity = _identity(node, None, "anonymous")
    else:
        digest = secret_hash(secret)
        if _is_bootstrap(node, digest):
            identity = _identity(node, None, "bootstrap")
        else:
            token = _live(node, digest)
            if token is None and await _caught_up(node, request):
                token = _live(node, digest)
            identity = _identity(node, token, "token" if token is not None else "not_found")
    request.state.acl_identity = identity
    return identity


async def _caught_up(node: Node, request: Request) -> bool:
    try:
        return await registry_barrier(node, request)
    except ApiError:
        return False


def _denied(identity: Identity, need: Need) -> ApiError:
    what = f"{need.resource}:{need.access}"
    where = f"every name under {need.name!r}" if need.every else repr(need.name)
    if identity.kind == "anonymous":
        who = "the anonymous token (no token given)"
    elif identity.kind == "not_found":
        who = "the anonymous token (the token given is unknown, deleted or expired)"
    else:
        who = f"token {identity.accessor_id!r}"
    return ApiError(403, "permission_denied", f"Permission denied: {who} lacks {what} on {where}",
                    resource=need.resource, access=need.access, name=need.name)


async def require(node: Node, request: Request, *needs: Need) -> Identity:
    """Raise ``ApiError`` 403 unless the request's token grants every need (401 for a
    malformed ``Authorization``); with ACLs off, grant everything."""
    if not node.config.acl.enabled:
        return _identity(node, None, "bootstrap")
    identity = await identify(node, request)
    for need in needs:
        if not identity.authorizer.check(need):
            raise _denied(identity, need)
    return identity


async def json_body(node: Node, request: Request) -> Any:
    """The request body as JSON for a need function, or None if it is not JSON.

    Read within ``limits.body_max_bytes`` (413 past it) and kept on the request,
    so the handler reads the same bytes again."""
    from configsvc.http.node_requests import read_body

    raw = await read_body(request, node.config.limits.body_max_bytes, "body_too_large")
    request._body = raw  # Request.stream() replays it to the handler
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def guard(node: Node, routes: Sequence[BaseRoute], needs: dict[str, NeedFn]) -> list[BaseRoute]:
    """``routes`` with each ``Route``'s endpoint checked first (rule 6 for a path
    missing from ``needs``); ACLs off: ``routes`` unchanged."""
    if not node.config.acl.enabled:
        return list(routes)
    guarded: list[BaseRoute] = []
    for route in routes:
        if not isinstance(route, Route):
            guarded.append(route)
            continue
        need = needs.get(route.path, _management)
        methods = sorted(route.methods or ()) or None
        guarded.append(Route(route.path, _checked(node, route.endpoint, need), methods=methods,
                             name=route.name))
    return guarded


async def _management(request: Request) -> Sequence[Need]:
    return (Need(ACL, "", WRITE),)


def _checked(node: Node, endpoint: Callable[..., Any], need: NeedFn) -> Callable[[Request], Awaitable[Response]]:
    async def checked(request: Request) -> Response:
        needs = await need(request)
        if needs:  # a public route neither looks at nor resolves the token
            await require(node, request, *needs)
        response: Response = await endpoint(request)
        return response

    return checked
