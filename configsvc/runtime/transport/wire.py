"""The peer transport's wire protocol: frames and the authenticated handshake.

Framing: ``u32 big-endian length || body``; ``body[0]`` is the frame kind.
The first frames of a connection are the handshake (hello, challenge, proof,
welcome) naming both nodes and the cluster and, when a peer secret is
configured, proving knowledge of it in both directions with HMAC-SHA256 over
fresh nonces (compared in constant time). Each side's proof covers the nonce
the *other* side just chose, so a recorded handshake replayed on a new
connection fails: the listener's new challenge nonce is not in it. Handshake
frames are capped at ``MAX_HANDSHAKE_FRAME`` bytes. Any violation raises
``ProtocolError`` (the caller closes that one connection and counts it).

Over peer TLS, the listener also checks (``identity``) that the dialler's
certificate names the node id its hello claims (``cert_names``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable

import msgpack  # type: ignore[import-untyped, unused-ignore]

PROTOCOL_VERSION = 1
#: handshake frames are tiny; an unauthenticated connection cannot make us allocate more
MAX_HANDSHAKE_FRAME = 4096
MAX_CHANNEL = 255
NONCE_BYTES = 16
LENGTH = struct.Struct(">I")

# Frame kinds: the first byte of every frame body.
HELLO, CHALLENGE, PROOF, WELCOME, REJECT, DATA, PING = range(1, 8)

# ---------------------------------------------------------------- framing


class ProtocolError(Exception):
    """The other end broke the framing or the handshake; close the connection."""


class Refused(ProtocolError):
    """A handshake refused for a reason worth telling the other end."""

    def __init__(self, reason: str, peer: str | None = None, *, auth: bool = False,
                 code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.peer = peer
        self.auth = auth
        #: the reason code the other end sent (``unknown-node``, ``auth``, ...), if it sent one
        self.code = code


def encode_frame(kind: int, body: bytes = b"") -> bytes:
    return LENGTH.pack(1 + len(body)) + bytes((kind,)) + body


def control_frame(kind: int, fields: list[object]) -> bytes:
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return encode_frame(kind, packed)


def data_frame(channel: bytes, payload: bytes) -> bytes:
    head = LENGTH.pack(2 + len(channel) + len(payload)) + bytes((DATA, len(channel))) + channel
    return head + payload


PING_FRAME = encode_frame(PING)


async def read_frame(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    """One frame body (``kind`` byte first). Raises ``ProtocolError`` if oversize
    or empty, ``asyncio.IncompleteReadError`` at EOF."""
    (n,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
    if not 1 <= n <= max_bytes:
        raise ProtocolError(f"frame of {n} bytes (limit {max_bytes})")
    return await reader.readexactly(n)


def parse_control(body: bytes, kind: int, arity: int) -> list[object]:
    if body[0] == REJECT and kind != REJECT:
        fields = parse_control(body, REJECT, 1)
        code = str(fields[0])[:64]
        raise Refused(f"refused by peer: {code}", auth=code in ("auth", "identity"), code=code)
    if body[0] != kind:
        raise ProtocolError(f"expected frame kind {kind}, got {body[0]}")
    try:
        fields = msgpack.unpackb(body[1:], raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # the unpacker's failure modes are not a closed set
        raise ProtocolError(f"undecodable handshake frame: {exc!r:.80}") from exc
    if not isinstance(fields, list) or len(fields) != arity:
        raise ProtocolError("malformed handshake frame")
    return fields


def as_text(obj: object) -> str:
    if type(obj) is not str or not 0 < len(obj) <= 256:
        raise ProtocolError("expected a short non-empty string")
    return obj


def as_blob(obj: object, size: int | None = None) -> bytes:
    if type(obj) is not bytes or (size is not None and len(obj) != size) or len(obj) > 256:
        raise ProtocolError("expected a short byte string")
    return obj


def handshake_proof(
    secret: bytes | None,
    role: str,
    cluster: str,
    client: str,
    server: str,
    client_nonce: bytes,
    server_nonce: bytes,
) -> bytes:
    """What ``role`` sends to prove it holds the secret; empty without one.

    The role is part of the MAC so a server's proof cannot be reflected back as
    a client's; both nonces are, so a recorded proof never verifies again.
    """
    if secret is None:
        return b""
    packed: bytes = msgpack.packb(
        [role, cluster, client, server, client_nonce, server_nonce], use_bin_type=True
    )
    return hmac.new(secret, packed, hashlib.sha256).digest()


async def write_all(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def client_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    cluster_id: str,
    node_id: str,
    peer_id: str,
    secret: bytes | None,
) -> None:
    """Dialler's side. Raises ``Refused`` (``auth=True`` for failed proofs),
    ``ProtocolError``, ``OSError`` or ``EOFError``; the caller applies the timeout."""
    client_nonce = secrets.token_bytes(NONCE_BYTES)
    await write_all(
        writer, control_frame(HELLO, [PROTOCOL_VERSION, cluster_id, node_id, peer_id, client_nonce])
    )
    fields = parse_control(await read_frame(reader, MAX_HANDSHAKE_FRAME), CHALLENGE, 3)
    server_id, server_nonce, server_proof = (
        as_text(fields[0]),
        as_blob(fields[1], NONCE_BYTES),
        as_blob(fields[2]),
    )
    if server_id != peer_id:
        raise Refused(f"dialled {peer_id!r} but {server_id!r} answered", peer_id, auth=True)
    args = (cluster_id, node_id, peer_id, client_nonce, server_nonce)
    if not hmac.compare_digest(handshake_proof(secret, "server", *args), server_proof):
        # Tell the server why we hang up, so both ends count the failure.
        with contextlib.suppress(OSError):
            await write_all(writer, control_frame(REJECT, ["auth"]))
        raise Refused("server failed to prove the peer secret", peer_id, auth=True)
    await write_all(writer, control_frame(PROOF, [handshake_proof(secret, "client", *args)]))
    parse_control(await read_frame(reader, MAX_HANDSHAKE_FRAME), WELCOME, 0)


async def server_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    cluster_id: str,
    node_id: str,
    secret: bytes | None,
    known: Callable[[str], bool],
    identity: Callable[[str], bool] = lambda src: True,
) -> str:
    """Listener's side: the authenticated peer id. ``known(src)``: is ``src`` a
    peer; ``identity(src)``: does the connection's certificate (if any) name it.
    Raises like ``client_handshake``."""
    fields = parse_control(await read_frame(reader, MAX_HANDSHAKE_FRAME), HELLO, 5)
    if fields[0] != PROTOCOL_VERSION:
        raise Refused("version")
    cluster, src, dst = as_text(fields[1]), as_text(fields[2]), as_text(fields[3])
    client_nonce = as_blob(fields[4], NONCE_BYTES)
    if cluster != cluster_id:
        raise Refused("cluster")
    if dst != node_id:
        raise Refused("destination")
    if src == node_id or not known(src):
        raise Refused("unknown-node")
    if not identity(src):
        raise Refused("identity", src, auth=True)
    server_nonce = secrets.token_bytes(NONCE_BYTES)
    args = (cluster_id, src, node_id, client_nonce, server_nonce)
    await write_all(
        writer, control_frame(CHALLENGE, [node_id, server_nonce, handshake_proof(secret, "server", *args)])
    )
    try:
        fields = parse_control(await read_frame(reader, MAX_HANDSHAKE_FRAME), PROOF, 1)
    except Refused as exc:  # the client found our proof wrong: a secret mismatch
        raise Refused("auth", src, auth=exc.auth) from exc
    if not hmac.compare_digest(handshake_proof(secret, "client", *args), as_blob(fields[0])):
        raise Refused("auth", src, auth=True)
    await write_all(writer, control_frame(WELCOME, []))
    return src


def cert_names(peer_cert: object) -> set[str]:
    """The names a verified certificate (``ssl``'s ``getpeercert()`` dict) gives
    its holder: its DNS subject alternative names, else its common names."""
    if not isinstance(peer_cert, dict):
        return set()
    sans = {value for kind, value in peer_cert.get("subjectAltName", ()) if kind == "DNS"}
    if sans:
        return sans
    return {value for rdn in peer_cert.get("subject", ()) for key, value in rdn if key == "commonName"}


def channel_bytes(channel: str) -> bytes:
    raw = channel.encode() if isinstance(channel, str) else b""
    if not 0 < len(raw) <= MAX_CHANNEL:
        raise ValueError(f"a channel is a non-empty string of at most {MAX_CHANNEL} UTF-8 bytes")
    return raw


def check_text(peer_id: str) -> None:
    try:
        as_text(peer_id)
    except ProtocolError as exc:
        raise ValueError(f"peer id must be 1..256 characters: {peer_id!r:.40}") from exc

