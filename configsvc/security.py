"""What a node needs from its configuration to authenticate peers and speak TLS.

Rules:

1. A node never starts with unauthenticated peers by accident: without a peer
   secret (``security.peer_secret`` or ``security.peer_secret_file``) and
   without mutual peer TLS (``tls.peers``), ``check_peer_security`` raises
   ``ConfigError`` unless the configuration says ``security.insecure_peers: true``.
2. A secret file is generated from ``secrets`` (32 random bytes, hex), created
   with mode 0600 and never overwritten; a secret file that anyone but its
   owner may read, or that is shorter than ``MIN_FILE_SECRET`` characters, is
   refused (``ConfigError``), as ssh refuses an open private key.
3. Peer TLS is mutual: the listener requires a client certificate, both ends
   verify the other's chain against ``tls.peers.ca_file``, and the transport
   checks that the certificate names the node id the handshake claims
   (``cert_names``: a DNS subject alternative name, else the common name).
4. Paths are relative to the working directory (like ``data_root``); ``{node}``
   in a TLS path is the node id.
"""

from __future__ import annotations

import os
import secrets
import ssl
import stat
from pathlib import Path
from typing import Any

from configsvc.config import ClusterConfig, ConfigError, TlsFiles

#: random bytes in a generated secret (written as twice as many hex digits)
SECRET_BYTES = 32
#: the shortest secret a file may hold
MIN_FILE_SECRET = 32


def generate_secret_file(path: str | Path) -> Path:
    """Write a new random peer secret to ``path`` with mode 0600.

    Raises ``FileExistsError`` if ``path`` exists (a secret is never replaced
    behind a running cluster's back) and ``OSError`` if it cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(SECRET_BYTES) + "\n")
    return path


def read_secret_file(path: str | Path) -> bytes:
    """The secret in ``path``. Raises ``ConfigError`` if it is missing, readable
    by group or others, or shorter than ``MIN_FILE_SECRET`` characters."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"security.peer_secret_file: cannot read {path}: {exc.strerror} "
            f"(create one with: configsvc secret generate {path})"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"security.peer_secret_file: {path} is accessible by others "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
        )
    if len(text) < MIN_FILE_SECRET:
        raise ConfigError(
            f"security.peer_secret_file: {path} holds {len(text)} characters; "
            f"a secret needs at least {MIN_FILE_SECRET}"
        )
    return text.encode()


def peer_secret(config: ClusterConfig) -> bytes | None:
    """The configured peer secret, or ``None``. Raises ``ConfigError`` (rule 2)."""
    sec = config.security
    if sec.peer_secret_file is not None:
        return read_secret_file(sec.peer_secret_file)
    return sec.peer_secret.encode() if sec.peer_secret is not None else None


def check_peer_security(config: ClusterConfig) -> None:
    """Raise ``ConfigError`` unless peers must authenticate or the config opts out (rule 1)."""
    sec = config.security
    if sec.peer_secret or sec.peer_secret_file or config.tls.peers or sec.insecure_peers:
        return
    raise ConfigError(
        "peers are not authenticated: set security.peer_secret_file (create it with "
        "`configsvc secret generate PATH`, then copy it to every node) or "
        "security.peer_secret, or configure mutual TLS under tls.peers; "
        "`security.insecure_peers: true` starts without (anyone who reaches a "
        "peer port can then speak for a node)"
    )


def _path(template: str, node_id: str) -> str:
    return template.replace("{node}", node_id)


def _load_chain(ctx: ssl.SSLContext, files: TlsFiles, node_id: str, where: str) -> None:
    try:
        ctx.load_cert_chain(_path(files.cert_file, node_id), _path(files.key_file, node_id))
        if files.ca_file is not None:
            ctx.load_verify_locations(_path(files.ca_file, node_id))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{where}: cannot load the certificate, key or CA: {exc}") from None


def peer_tls(config: ClusterConfig, node_id: str) -> tuple[ssl.SSLContext, ssl.SSLContext] | None:
    """``(listener, dialler)`` contexts for mutual peer TLS (rule 3), or ``None``.

    Raises ``ConfigError`` if a file cannot be loaded.
    """
    files = config.tls.peers
    if files is None:
        return None
    try:
        return mutual_tls(*(_path(f, node_id) for f in (files.ca_file, files.cert_file, files.key_file)))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls.peers: cannot load the certificate, key or CA: {exc}") from None


def mutual_tls(ca_file: str, cert_file: str, key_file: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """``(listener, dialler)`` contexts that present ``cert_file`` and require the
    other end's certificate to chain to ``ca_file``. Host names are not checked
    by ``ssl`` (peers are dialled by address): the transport checks that the
    certificate names the peer's node id instead. Raises ``OSError`` or ``ssl.SSLError``."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    for ctx in (server, client):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(cert_file, key_file)
        ctx.load_verify_locations(ca_file)
    return server, client


def api_tls(config: ClusterConfig, node_id: str) -> dict[str, Any]:
    """uvicorn's TLS keyword arguments for the client APIs; empty without ``tls.api``.

    Raises ``ConfigError`` if a file is missing (uvicorn would fail later and less clearly).
    """
    files = config.tls.api
    if files is None:
        return {}
    _load_chain(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), files, node_id, "tls.api")
    kwargs: dict[str, Any] = {
        "ssl_certfile": _path(files.cert_file, node_id),
        "ssl_keyfile": _path(files.key_file, node_id),
    }
    if files.ca_file is not None:
        kwargs["ssl_ca_certs"] = _path(files.ca_file, node_id)
        kwargs["ssl_cert_reqs"] = ssl.CERT_REQUIRED if files.verify_client else ssl.CERT_NONE
    return kwargs


def api_scheme(config: ClusterConfig) -> str:
    return "https" if config.tls.api is not None else "http"


def api_verify(config: ClusterConfig, node_id: str) -> ssl.SSLContext | bool:
    """What a node's own HTTP client (the dashboard's view of its peers) verifies
    the other nodes' API certificates with: the API CA, else the system's."""
    files = config.tls.api
    if files is None or files.ca_file is None:
        return True
    ctx = ssl.create_default_context(cafile=_path(files.ca_file, node_id))
    if files.verify_client:
        ctx.load_cert_chain(_path(files.cert_file, node_id), _path(files.key_file, node_id))
    return ctx


