"""ACL tokens and policies in the strong metadata (state-machine version >= 4).

Modelled on Consul's ACL system: a *policy* is a named list of rules, a *token*
links policies by name and is presented by its secret. Rules (``AclRule``)::

    resource  prefix                       access
    key       "<namespace>/<key prefix>"   read | write | deny
    service   "<namespace>/<name prefix>"  read | write | deny
    namespace "<namespace name prefix>"    read | write | deny
    acl       ""                           read | write | deny

Evaluation (longest prefix, ``deny`` first on a tie) is not done here but by
``configsvc.http.acl``: this module only stores what the log decides.

Rules (what every replica's ACL table obeys):

1. Values only. The table holds tokens and policies as frozen values; secrets
   only as ``secret_hash`` (SHA-256 of the secret, 32 bytes): a snapshot, a
   log or a ``GET /v1/acl/token`` never carries a secret. ``accessor_id`` is
   the public name of a token, as in Consul.
2. Time is data. A token's ``expiration_ms`` (0 = never) is a wall time the
   request proposed (``SetAclToken.now_ms``); ``SetAclToken`` with an
   expiration not after its ``now_ms`` is refused, and ``expire(now_ms)`` —
   run by ``ExpireSessions(now_ms, ...)`` under version >= 4 — drops every
   token expired at ``now_ms``. No replica reads a clock.
3. Uniqueness. One token per accessor id and per secret hash; a
   ``SetAclToken`` for an existing accessor id must carry the same hash (a
   token's secret never changes), a new accessor id must not reuse a hash.
4. Links. A new or updated token may link only existing policies (and the
   built-in ``global-management``); deleting a policy leaves tokens linking it,
   and the missing name simply grants nothing (Consul's behaviour).
5. Determinism. Tokens and policies are walked only in sorted order; ``state``
   returns them sorted, ``restore`` accepts exactly that.
6. Writes change no revision (``strong.state_machine`` rule 6): ACL changes
   are not key or service changes and wake no watcher.
"""

from __future__ import annotations

from dataclasses import dataclass

from strong.canonical import WireError, read_bytes, read_list, read_str, read_uint
from strong.canonical import check_text as _text
from strong.canonical import check_uint as _uint
from strong.results import ErrorCode, ErrorResult, NoopResult, Result

__all__ = [
    "ACCESS",
    "ACL_OPS",
    "ACL_TAGS",
    "ACL_VERSION",
    "MANAGEMENT_POLICY",
    "RESOURCES",
    "AclOp",
    "AclPolicy",
    "AclRule",
    "AclState",
    "AclTable",
    "AclToken",
    "DeleteAclPolicy",
    "DeleteAclToken",
    "SetAclPolicy",
    "SetAclToken",
    "decode_acl_op",
    "decode_acl_state",
    "encode_acl_op",
    "encode_acl_state",
]

#: the state-machine version from which ACL ops apply (and snapshots carry the table)
ACL_VERSION = 4
READ, WRITE, DENY = "read", "write", "deny"
ACCESS = (READ, WRITE, DENY)
KEY, SERVICE, NAMESPACE, ACL = "key", "service", "namespace", "acl"
RESOURCES = (KEY, SERVICE, NAMESPACE, ACL)
#: the built-in policy granting everything (Consul's ``global-management``)
MANAGEMENT_POLICY = "global-management"

MAX_TEXT_BYTES = 1024
MAX_NAME_BYTES = 128
MAX_RULES = 256
MAX_LINKS = 64
SECRET_HASH_BYTES = 32


@dataclass(frozen=True, slots=True)
class AclRule:
    """``access`` to every ``resource`` name starting with ``prefix`` (see the module doc)."""

    resource: str
    prefix: str
    access: str

    def __post_init__(self) -> None:
        if self.resource not in RESOURCES:
            raise ValueError(f"rule resource must be one of {RESOURCES}, got {self.resource!r:.60}")
        if self.access not in ACCESS:
            raise ValueError(f"rule access must be one of {ACCESS}, got {self.access!r:.60}")
        _text(self.prefix, "rule prefix", MAX_TEXT_BYTES)
        if self.resource == ACL and self.prefix:
            raise ValueError("an acl rule has no prefix")


@dataclass(frozen=True, slots=True)
class AclPolicy:
    """A named set of rules, sorted, at most one per (resource, prefix)."""

    name: str
    description: str
    rules: tuple[AclRule, ...]

    def __post_init__(self) -> None:
        _text(self.name, "policy name", MAX_NAME_BYTES, empty=False)
        _text(self.description, "description", MAX_TEXT_BYTES)
        if not isinstance(self.rules, tuple) or not all(isinstance(r, AclRule) for r in self.rules):
            raise ValueError("rules must be a tuple of AclRule")
        if len(self.rules) > MAX_RULES:
            raise ValueError(f"a policy holds at most {MAX_RULES} rules")
        ordered = tuple(sorted(self.rules, key=lambda r: (r.resource, r.prefix, r.access)))
        if len({(r.resource, r.prefix) for r in ordered}) != len(ordered):
            raise ValueError("a policy holds one rule per (resource, prefix)")
        object.__setattr__(self, "rules", ordered)


@dataclass(frozen=True, slots=True)
class AclToken:
    """A token: public ``accessor_id``, ``secret_hash`` = SHA-256 of its secret."""

    accessor_id: str
    secret_hash: bytes
    description: str
    policies: tuple[str, ...]
    #: wall time (ms) from which the token is void; 0 = never
    expiration_ms: int
    #: wall time (ms) the creating request proposed
    create_ms: int

    def __post_init__(self) -> None:
        _text(self.accessor_id, "accessor_id", MAX_NAME_BYTES, empty=False)
        if type(self.secret_hash) is not bytes or len(self.secret_hash) != SECRET_HASH_BYTES:
            raise ValueError(f"secret_hash must be {SECRET_HASH_BYTES} bytes")
        _text(self.description, "description", MAX_TEXT_BYTES)
        if not isinstance(self.policies, tuple) or len(self.policies) > MAX_LINKS:
            raise ValueError(f"policies must be a tuple of at most {MAX_LINKS} names")
        for name in self.policies:
            _text(name, "policy name", MAX_NAME_BYTES, empty=False)
        object.__setattr__(self, "policies", tuple(sorted(set(self.policies))))
        _uint(self.expiration_ms, "expiration_ms")
        _uint(self.create_ms, "create_ms")

    def expired(self, now_ms: int) -> bool:
        """Void at ``now_ms`` (a wall time: the caller's, or a command's)."""
        return self.expiration_ms != 0 and now_ms >= self.expiration_ms


# --- ops ---------------------------------------------------------------------


@dataclass(frozen=True)
class SetAclPolicy:
    """Create or replace the policy ``policy.name``."""

    policy: AclPolicy

    def __post_init__(self) -> None:
        if not isinstance(self.policy, AclPolicy):
            raise ValueError("policy must be an AclPolicy")
        if self.policy.name == MANAGEMENT_POLICY:
            raise ValueError(f"{MANAGEMENT_POLICY!r} is built in")


@dataclass(frozen=True)
class DeleteAclPolicy:
    name: str

    def __post_init__(self) -> None:
        _text(self.name, "policy name", MAX_NAME_BYTES, empty=False)


@dataclass(frozen=True)
class SetAclToken:
    """Create the token, or update description/policies/expiration of an existing
    one with the same accessor id and secret hash (rule 3), proposed at ``now_ms``."""

    token: AclToken
    now_ms: int

    def __post_init__(self) -> None:
        if not isinstance(self.token, AclToken):
            raise ValueError("token must be an AclToken")
        _uint(self.now_ms, "now_ms")


@dataclass(frozen=True)
class DeleteAclToken:
    accessor_id: str

    def __post_init__(self) -> None:
        _text(self.accessor_id, "accessor_id", MAX_NAME_BYTES, empty=False)


AclOp = SetAclPolicy | DeleteAclPolicy | SetAclToken | DeleteAclToken
ACL_OPS = (SetAclPolicy, DeleteAclPolicy, SetAclToken, DeleteAclToken)


# --- the table ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AclState:
    """The table as sorted values (snapshot payload)."""

    policies: tuple[AclPolicy, ...] = ()
    tokens: tuple[AclToken, ...] = ()


def _error(code: str, message: str) -> ErrorResult:
    return ErrorResult(code, message)


class AclTable:
    """Policies by name, tokens by accessor id and by secret hash."""

    def __init__(self) -> None:
        self._policies: dict[str, AclPolicy] = {}
        self._tokens: dict[str, AclToken] = {}
        self._by_hash: dict[bytes, str] = {}

    def apply(self, op: AclOp) -> Result:
        """Apply one ACL op; a refused op is an ``ErrorResult`` and changes nothing."""
        match op:
            case SetAclPolicy(policy):
                self._policies[policy.name] = policy
                return NoopResult()
            case DeleteAclPolicy(name):
                if self._policies.pop(name, None) is None:
                    return _error(ErrorCode.ACL_NOT_FOUND, f"no policy {name!r}")
                return NoopResult()
            case SetAclToken(token, now_ms):
                return self._set_token(token, now_ms)
            case DeleteAclToken(accessor_id):
                gone = self._tokens.pop(accessor_id, None)
                if gone is None:
                    return _error(ErrorCode.ACL_NOT_FOUND, f"no token {accessor_id!r}")
                del self._by_hash[gone.secret_hash]
                return NoopResult()

    def _set_token(self, token: AclToken, now_ms: int) -> Result:
        if token.expired(now_ms):
            return _error(ErrorCode.ACL_INVALID, "the expiration time is not in the future")
        missing = [p for p in token.policies if p != MANAGEMENT_POLICY and p not in self._policies]
        if missing:
            return _error(ErrorCode.ACL_NOT_FOUND, f"no policy {', '.join(map(repr, missing))}")
        holder = self._by_hash.get(token.secret_hash)
        if holder is not None and holder != token.accessor_id:
            return _error(ErrorCode.ACL_CONFLICT, "another token has this secret")
        existing = self._tokens.get(token.accessor_id)
        if existing is not None and existing.secret_hash != token.secret_hash:
            return _error(ErrorCode.ACL_CONFLICT, f"token {token.accessor_id!r} exists with another secret")
        if existing is not None:  # an update keeps the creation time
            token = AclToken(token.accessor_id, token.secret_hash, token.description,
                             token.policies, token.expiration_ms, existing.create_ms)
        self._tokens[token.accessor_id] = token
        self._by_hash[token.secret_hash] = token.accessor_id
        return NoopResult()

    def expire(self, now_ms: int) -> None:
        """Drop every token expired at ``now_ms`` (rule 2)."""
        for accessor_id in sorted(self._tokens):
            token = self._tokens[accessor_id]
            if token.expired(now_ms):
                del self._tokens[accessor_id]
                del self._by_hash[token.secret_hash]

    # --- queries (the HTTP side reads these from the applied state) --------

    def token_by_hash(self, secret_hash: bytes) -> AclToken | None:
        accessor_id = self._by_hash.get(secret_hash)
        return None if accessor_id is None else self._tokens[accessor_id]

    def token(self, accessor_id: str) -> AclToken | None:
        return self._tokens.get(accessor_id)

    def policy(self, name: str) -> AclPolicy | None:
        return self._policies.get(name)

    def state(self) -> AclState:
        return AclState(
            tuple(self._policies[n] for n in sorted(self._policies)),
            tuple(self._tokens[a] for a in sorted(self._tokens)),
        )

    @classmethod
    def restore(cls, state: AclState) -> AclTable:
        """The table of ``state`` (as ``decode_acl_state`` checked it)."""
        table = cls()
        for policy in state.policies:
            table._policies[policy.name] = policy
        for token in state.tokens:
            table._tokens[token.accessor_id] = token
            table._by_hash[token.secret_hash] = token.accessor_id
        return table


# --- wire form (commands and snapshots): tagged lists, no maps ------------------

ACL_TAGS = ("aclp+", "aclp-", "aclt+", "aclt-")


def _encode_policy(p: AclPolicy) -> list[object]:
    return [p.name, p.description, [[r.resource, r.prefix, r.access] for r in p.rules]]


def _decode_policy(obj: object) -> AclPolicy:
    name, description, rules = read_list(obj, "policy", 3)
    decoded = []
    for item in read_list(rules, "rules"):
        resource, prefix, access = read_list(item, "rule", 3)
        decoded.append(AclRule(read_str(resource, "resource"), read_str(prefix, "prefix"),
                               read_str(access, "access")))
    policy = AclPolicy(read_str(name, "name"), read_str(description, "description"), tuple(decoded))
    if list(policy.rules) != decoded:
        raise WireError(f"policy {policy.name!r:.60}: rules not sorted")
    return policy


def _encode_token(t: AclToken) -> list[object]:
    return [t.accessor_id, t.secret_hash, t.description, list(t.policies), t.expiration_ms, t.create_ms]


def _decode_token(obj: object) -> AclToken:
    accessor_id, secret_hash, description, policies, expiration, created = read_list(obj, "token", 6)
    names = [read_str(p, "policy name") for p in read_list(policies, "policies")]
    token = AclToken(read_str(accessor_id, "accessor_id"), read_bytes(secret_hash, "secret_hash"),
                     read_str(description, "description"), tuple(names),
                     read_uint(expiration, "expiration_ms"), read_uint(created, "create_ms"))
    if list(token.policies) != names:
        raise WireError(f"token {token.accessor_id!r:.60}: policies not sorted and unique")
    return token


def encode_acl_op(op: AclOp) -> list[object]:
    match op:
        case SetAclPolicy(policy):
            return ["aclp+", _encode_policy(policy)]
        case DeleteAclPolicy(name):
            return ["aclp-", name]
        case SetAclToken(token, now_ms):
            return ["aclt+", _encode_token(token), now_ms]
        case DeleteAclToken(accessor_id):
            return ["aclt-", accessor_id]


def decode_acl_op(tag: str, args: list[object]) -> AclOp:
    """Inverse of ``encode_acl_op`` (``tag`` one of ``ACL_TAGS``); raises ``WireError``
    or ``ValueError``."""
    match tag, args:
        case "aclp+", [policy]:
            return SetAclPolicy(_decode_policy(policy))
        case "aclp-", [name]:
            return DeleteAclPolicy(read_str(name, "name"))
        case "aclt+", [token, now_ms]:
            return SetAclToken(_decode_token(token), read_uint(now_ms, "now_ms"))
        case "aclt-", [accessor_id]:
            return DeleteAclToken(read_str(accessor_id, "accessor_id"))
    raise WireError(f"op {tag!r:.40}: wrong fields")


def encode_acl_state(state: AclState) -> list[object]:
    return [[_encode_policy(p) for p in state.policies], [_encode_token(t) for t in state.tokens]]


def decode_acl_state(obj: object) -> AclState:
    """Inverse of ``encode_acl_state``; raises ``WireError`` for anything it cannot
    have produced (unsorted or duplicate names, ids or hashes, invalid values)."""
    policies_obj, tokens_obj = read_list(obj, "acl", 2)
    try:
        policies = tuple(_decode_policy(p) for p in read_list(policies_obj, "policies"))
        tokens = tuple(_decode_token(t) for t in read_list(tokens_obj, "tokens"))
    except ValueError as exc:
        raise WireError(f"acl: {exc}") from exc
    names = [p.name for p in policies]
    ids = [t.accessor_id for t in tokens]
    if names != sorted(set(names)) or ids != sorted(set(ids)):
        raise WireError("acl: policy names or accessor ids not strictly increasing")
    if MANAGEMENT_POLICY in names:
        raise WireError(f"acl: {MANAGEMENT_POLICY!r} is built in")
    if len({t.secret_hash for t in tokens}) != len(tokens):
        raise WireError("acl: two tokens share a secret hash")
    return AclState(policies, tokens)
