"""The ACL part of ``configsvc.client.Client``: tokens and policies (docs/acl.md).

``AclMethods`` is mixed into ``Client``; every call raises ``ClientError`` as
the client's other calls do (``403 permission_denied`` without ``acl:write``,
``401 acl_disabled`` when the cluster runs without ACLs).

``acl_create_token`` picks the token's accessor id and secret here, not on the
server, so a retried create (the client retries a write whose answer it did
not get, deduplicated by its client id and sequence number) is the same
token, and the secret it returns is the one stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

__all__ = ["TOKEN_HEADER", "AclMethods", "acl_headers"]

#: the header the client presents its ACL token in (Consul's; both faces accept it)
TOKEN_HEADER = "X-Consul-Token"


def acl_headers(token: str | None) -> dict[str, str]:
    """The default headers of a client holding ACL ``token`` (None: anonymous)."""
    return {TOKEN_HEADER: token} if token else {}


class AclMethods:
    def request(self, method: str, path: str, *, write: bool = False, **kw: Any) -> dict[str, Any]:
        raise NotImplementedError  # ``Client.request``

    # ---- policies --------------------------------------------------------------

    def acl_set_policy(self, name: str, rules: Sequence[tuple[str, str, str]],
                       description: str = "") -> dict[str, Any]:
        """Create or replace policy ``name``; ``rules``: (resource, prefix, access)."""
        body = {"name": name, "description": description,
                "rules": [{"resource": r, "prefix": p, "access": a} for r, p, a in rules]}
        policy: dict[str, Any] = self.request("POST", "/v1/acl/policies", write=True, json=body)["policy"]
        return policy

    def acl_policies(self) -> list[dict[str, Any]]:
        policies: list[dict[str, Any]] = self.request("GET", "/v1/acl/policies")["policies"]
        return policies

    def acl_policy(self, name: str) -> dict[str, Any]:
        policy: dict[str, Any] = self.request("GET", f"/v1/acl/policies/{quote(name, safe='')}")["policy"]
        return policy

    def acl_delete_policy(self, name: str) -> None:
        self.request("DELETE", f"/v1/acl/policies/{quote(name, safe='')}", write=True)

    # ---- tokens ----------------------------------------------------------------

    def acl_create_token(self, policies: Sequence[str], description: str = "",
                         ttl: float | None = None, secret: str | None = None) -> dict[str, Any]:
        """A new token linking ``policies``, void after ``ttl`` seconds if given; the
        answer holds its ``secret`` (shown this once)."""
        body: dict[str, Any] = {"accessor_id": str(uuid.uuid4()), "secret": secret or str(uuid.uuid4()),
                                "description": description, "policies": list(policies)}
        if ttl is not None:
            body["ttl"] = ttl
        token: dict[str, Any] = self.request("POST", "/v1/acl/tokens", write=True, json=body)["token"]
        return token

    def acl_tokens(self) -> list[dict[str, Any]]:
        tokens: list[dict[str, Any]] = self.request("GET", "/v1/acl/tokens")["tokens"]
        return tokens

    def acl_token(self, accessor_id: str) -> dict[str, Any]:
        token: dict[str, Any] = self.request("GET", f"/v1/acl/tokens/{quote(accessor_id, safe='')}")["token"]
        return token

    def acl_token_self(self) -> dict[str, Any]:
        token: dict[str, Any] = self.request("GET", "/v1/acl/tokens/self")["token"]
        return token

    def acl_delete_token(self, accessor_id: str) -> None:
        self.request("DELETE", f"/v1/acl/tokens/{quote(accessor_id, safe='')}", write=True)
