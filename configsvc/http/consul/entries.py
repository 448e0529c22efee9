"""Consul KV keys and entries: the namespace segment, and what each store shows.

A Consul key ``payments/db/url`` lives in namespace ``payments`` under the
store key ``db/url``: the namespace is the first path segment, and a prefix
never spans namespaces. Entries carry Consul's fields:

    {"Key", "Value" (base64 or null), "Flags", "CreateIndex", "ModifyIndex",
     "LockIndex"}

Strong namespaces: ``CreateIndex``/``ModifyIndex`` are the key's
create/mod revisions, ``Flags`` its flags, ``LockIndex`` 0 (no sessions).

Eventual namespaces have no revisions and no flags. A key there may hold
several concurrent values (siblings); Consul has one value per key, so the
face shows the sibling with the greatest (hybrid timestamp, dot) — the same
choice on every replica that holds the same siblings — and a write through
the face supersedes every sibling the node has seen. ``ModifyIndex`` is a
*version stamp* (``eventual.txn.version_stamp``): a 52-bit digest of the
key's sibling dots, equal on every replica holding the same versions and
different after any write or delete that touches the key (so ``cas``
detects any change); it is not ordered.
``CreateIndex`` equals it (creation is not recorded), ``Flags`` is 0.
"""

from __future__ import annotations

import base64
from typing import Any

from configsvc.http.errors import ApiError, bad_request
from eventual.requests import SiblingView
from eventual.txn import version_stamp as stamp_of
from strong.results import KeyValue


def split_key(key: str, *, prefix: bool, key_max_bytes: int) -> tuple[str, str]:
    """(namespace, key in the namespace). A prefix may be the bare namespace
    (``app`` or ``app/``: every key of it); a key needs a name after it."""
    ns, sep, rest = key.partition("/")
    if not ns:
        raise bad_request("a Consul key starts with its namespace: <namespace>/<key>")
    if not prefix and not rest:
        what = "a namespace alone" if not sep else "a namespace and an empty key"
        raise bad_request(f"{key!r} is {what}; a key is <namespace>/<key>")
    if len(rest.encode()) > key_max_bytes:
        raise ApiError(400, "key_too_long", f"keys are at most {key_max_bytes} bytes")
    return ns, rest


def full_key(ns: str, key: str | bytes) -> str:
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    return f"{ns}/{text}"


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def strong_entry(ns: str, kv: KeyValue, *, with_value: bool = True) -> dict[str, Any]:
    return {
        "Key": full_key(ns, kv.key),
        "Value": _b64(kv.value) if with_value else None,
        "Flags": kv.flags,
        "CreateIndex": kv.create_revision,
        "ModifyIndex": kv.mod_revision,
        "LockIndex": 0,
    }


def shown(siblings: tuple[SiblingView, ...]) -> SiblingView:
    """The one value the Consul face shows of a key's siblings (never empty)."""
    return max(siblings, key=lambda s: (s.hlc, s.dot))


def version_stamp(siblings: tuple[SiblingView, ...]) -> int:
    """A key's eventual ``ModifyIndex``: in [1, 2**52] (0: no siblings, absent)."""
    return stamp_of(s.dot for s in siblings)


def eventual_entry(ns: str, key: str, siblings: tuple[SiblingView, ...]) -> dict[str, Any]:
    stamp = version_stamp(siblings)
    return {
        "Key": full_key(ns, key),
        "Value": _b64(shown(siblings).value),
        "Flags": 0,
        "CreateIndex": stamp,
        "ModifyIndex": stamp,
        "LockIndex": 0,
    }


def keys_only(keys: list[str], prefix: str, separator: str | None) -> list[str]:
    """Consul's ``?keys&separator=``: every key under ``prefix``, each cut after the
    first ``separator`` past the prefix (so a "folder" appears once), sorted."""
    if not separator:
        return sorted(keys)
    out: set[str] = set()
    for key in keys:
        cut = key.find(separator, len(prefix))
        out.add(key if cut < 0 else key[: cut + len(separator)])
    return sorted(out)
