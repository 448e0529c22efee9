"""``configsvc.security``: peer authentication required, secret files, TLS files."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path
from typing import Any

import pytest

from configsvc.config import ClusterConfig, ConfigError, parse_config
from configsvc.lab.certs import make_ca
from configsvc.security import (
    api_tls,
    check_peer_security,
    generate_secret_file,
    peer_secret,
    peer_tls,
    read_secret_file,
)

NODES = [{"id": "n1", "api_port": 1, "peer_port": 2}]


def cfg(**sections: Any) -> ClusterConfig:
    return parse_config({"nodes": NODES, **sections})


def test_peer_authentication_is_required_unless_explicitly_waived(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="insecure_peers: true"):
        check_peer_security(cfg())
    check_peer_security(cfg(security={"peer_secret": "s" * 32}))
    check_peer_security(cfg(security={"peer_secret_file": str(tmp_path / "s")}))
    check_peer_security(cfg(security={"insecure_peers": True}))
    files = {"ca_file": "ca.pem", "cert_file": "n.pem", "key_file": "k.pem"}
    check_peer_security(cfg(tls={"peers": files}))
    with pytest.raises(ConfigError, match="insecure_peers"):  # API TLS does not authenticate peers
        check_peer_security(cfg(tls={"api": files}))


def test_config_refuses_contradictions() -> None:
    with pytest.raises(ConfigError, match="not both"):
        cfg(security={"peer_secret": "s" * 32, "peer_secret_file": "f"})
    with pytest.raises(ConfigError, match="verify_client needs ca_file"):
        cfg(tls={"api": {"cert_file": "c", "key_file": "k", "verify_client": True}})
    with pytest.raises(ConfigError, match="ca_file"):  # peer TLS always verifies the other end
        cfg(tls={"peers": {"cert_file": "c", "key_file": "k"}})


def test_a_generated_secret_is_private_long_and_never_overwritten(tmp_path: Path) -> None:
    path = generate_secret_file(tmp_path / "dir" / "secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text().strip()
    assert len(bytes.fromhex(text)) == 32
    assert peer_secret(cfg(security={"peer_secret_file": str(path)})) == text.encode()
    with pytest.raises(FileExistsError):
        generate_secret_file(path)
    assert path.read_text().strip() == text
    assert generate_secret_file(tmp_path / "other").read_text() != path.read_text()


def test_an_open_short_or_missing_secret_file_is_refused(tmp_path: Path) -> None:
    path = generate_secret_file(tmp_path / "secret")
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="accessible by others"):
        read_secret_file(path)
    short = tmp_path / "short"
    short.write_text("x" * 31)
    short.chmod(0o600)
    with pytest.raises(ConfigError, match="at least 32"):
        read_secret_file(short)
    with pytest.raises(ConfigError, match="configsvc secret generate"):
        read_secret_file(tmp_path / "missing")


def test_tls_files_are_per_node_and_checked_at_start(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    ca.issue("n1")
    files = {"ca_file": str(ca.ca_file), "cert_file": str(tmp_path / "{node}.pem"),
             "key_file": str(tmp_path / "{node}-key.pem")}
    config = cfg(tls={"api": {**files, "verify_client": True}, "peers": files})
    contexts = peer_tls(config, "n1")
    assert contexts is not None and all(c.verify_mode == ssl.CERT_REQUIRED for c in contexts)
    kwargs = api_tls(config, "n1")
    assert kwargs["ssl_certfile"] == str(tmp_path / "n1.pem")
    assert kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    with pytest.raises(ConfigError, match=r"tls\.peers"):
        peer_tls(config, "n2")  # no certificate issued for n2
    with pytest.raises(ConfigError, match=r"tls\.api"):
        api_tls(config, "n2")
    assert peer_tls(cfg(), "n1") is None and api_tls(cfg(), "n1") == {}
