"""Mutual TLS on the peer transport, in-process, on both event loops (asyncio, uvloop).

A node runs on uvloop; its listener's TLS handshakes are run by the loop,
so a failed one is counted through the context's ``sslobject_class``
(``transport._counting_tls``) — this file checks it counts on both loops.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import uvloop

from configsvc.lab.certs import CertificateAuthority, make_ca
from configsvc.runtime.transport import Transport
from configsvc.runtime.transport.wire import cert_names
from configsvc.security import mutual_tls
from tests.test_transport import HOST, Inbox, config, eventually

LOOPS = {"asyncio": asyncio.run, "uvloop": uvloop.run}


def contexts(ca: CertificateAuthority, name: str, trusted: CertificateAuthority | None = None,
             ) -> dict[str, ssl.SSLContext]:
    issued = ca.issue(name)
    server, client = mutual_tls(str((trusted or ca).ca_file), str(issued.cert_file), str(issued.key_file))
    return {"tls_server": server, "tls_client": client}


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertificateAuthority, CertificateAuthority]:
    root = tmp_path_factory.mktemp("cas")
    return make_ca(root / "cluster"), make_ca(root / "rogue", "rogue CA")


@pytest.mark.parametrize("loop", LOOPS)
def test_mutual_tls_carries_frames_and_refuses_foreign_or_misnamed_certificates(
    loop: str, cas: tuple[CertificateAuthority, CertificateAuthority]
) -> None:
    ca, rogue = cas

    async def main() -> None:
        b = Transport(config("b", peers={"a": (HOST, 1), "c": (HOST, 1)}, **contexts(ca, "b")))
        await b.start()
        inbox = Inbox(b)
        dialers = [
            Transport(config("a", peers={"b": (HOST, b.port)}, **contexts(ca, "a"))),
            # "c" signed by another CA (trusting ours, as a real intruder would)
            Transport(config("c", peers={"b": (HOST, b.port)}, **contexts(rogue, "c", trusted=ca))),
            # the cluster's CA, but a certificate for "x" claiming to be "c"
            Transport(config("c", peers={"b": (HOST, b.port)}, **contexts(ca, "x"))),
        ]
        try:
            for t in dialers:
                await t.start()
                t.send("b", "strong", t.config.node_id.encode())
            assert await inbox.next() == ("strong", "a", b"a")
            await eventually(lambda: {"tls", "identity"} <= set(b.stats().rejected), "both refusals")
            assert b.stats().peers["c"].auth_failures >= 1  # the misnamed one named a peer
            assert inbox.queue.empty()
        finally:
            for t in (*dialers, b):
                await t.close()

    LOOPS[loop](asyncio.wait_for(main(), 30))


def test_a_dialler_refuses_a_listener_whose_certificate_names_another_node(
    cas: tuple[CertificateAuthority, CertificateAuthority],
) -> None:
    ca, _ = cas

    async def main() -> None:
        impostor = Transport(config("b", peers={"a": (HOST, 1)}, **contexts(ca, "not-b")))
        await impostor.start()
        a = Transport(config("a", peers={"b": (HOST, impostor.port)}, **contexts(ca, "a")))
        await a.start()
        try:
            await eventually(lambda: a.stats().peers["b"].auth_failures >= 1, "the dialler's refusal")
            assert not a.stats().peers["b"].connected
        finally:
            await a.close()
            await impostor.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_peer_tls_is_mutual_and_two_sided(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    ctx = contexts(ca, "a")
    with pytest.raises(ValueError, match="both"):
        config("a", tls_server=ctx["tls_server"])
    lax = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(ValueError, match="mutual"):
        config("a", tls_server=lax, tls_client=ctx["tls_client"])


def test_cert_names_prefers_dns_alternative_names_over_the_common_name() -> None:
    both = {"subject": ((("commonName", "cn"),),), "subjectAltName": (("DNS", "n1"), ("IP Address", "1.2.3.4"))}
    assert cert_names(both) == {"n1"}
    assert cert_names({"subject": ((("commonName", "cn"),),)}) == {"cn"}
    assert cert_names(None) == set() and cert_names({}) == set()

