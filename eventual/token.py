"""Session tokens and read contexts: a version vector as a compact opaque string.

Format: ``"c1." + base64url(msgpack(sorted [actor, counter] pairs))`` without
padding; the empty vector is ``"c1."``. A *session token* is what a client
has observed (every response carries the new one); a *read context* is what
a read of one key saw (the version vector of its siblings' dots), handed back
with a write to say what that write supersedes. Both are bounded by the
number of replica identities.

``decode_vv`` raises ``BadToken`` (a ``ValueError``) for anything that
``encode_vv`` did not produce; ``None`` and ``""`` mean the empty vector.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

import msgpack

from eventual.codec import MalformedMessage, read_vv
from eventual.dots import VV

__all__ = ["BadToken", "decode_vv", "encode_vv"]

_PREFIX = "c1."
MAX_TOKEN = 64 * 1024


class BadToken(ValueError):
    """A session token or read context that is not one this store issued."""


def encode_vv(vv: Mapping[str, int]) -> str:
    pairs = [[a, n] for a, n in sorted(vv.items()) if n > 0]
    raw: bytes = msgpack.packb(pairs, use_bin_type=True)
    return _PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_vv(token: str | None) -> VV:
    if token is None or token == "":
        return {}
    if not isinstance(token, str) or len(token) > MAX_TOKEN or not token.startswith(_PREFIX):
        raise BadToken("not a causal token")
    body = token[len(_PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        obj = msgpack.unpackb(raw, raw=False, use_list=True, strict_map_key=True)
        return dict(read_vv(obj, "token"))
    except (binascii.Error, MalformedMessage, ValueError) as exc:
        raise BadToken(f"not a causal token: {exc}") from exc
    except Exception as exc:  # the unpacker's failures are not a closed set
        raise BadToken(f"not a causal token: {exc!r:.60}") from exc
