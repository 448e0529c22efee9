"""``configsvc cluster up``: a local cluster that stays up while you break it.

Starts the node processes and a control server (``configsvc.lab.control``),
prints "ready" with the addresses, then supervises: a node that exits is
reported on one line (which node, exit code or signal, its log) and the
others keep running; ``cluster restart NODE`` brings it back. Everything
stops only on SIGTERM or Ctrl-C. The state file (``control.state_file``)
tells the other ``cluster`` commands where the control server is; it is
removed on the way out.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from configsvc.http.acl import BOOTSTRAP_ENV
from configsvc.http.ui import CONTROL_URL_ENV
from configsvc.lab.certs import make_ca
from configsvc.lab.control import ControlServer, state_file
from configsvc.lab.netns import NetnsError
from configsvc.lab.supervisor import Supervisor

__all__ = ["cluster_up"]

POLL = 0.2  # seconds between checks of the node processes while supervising


#: reasons a fresh cluster shows until it can take every request: a leader, the
#: configured namespaces, the newest state-machine version (ACLs need version 4)
_STARTING = {"no_leader", "no_quorum", "namespaces_not_ready", "version_pending"}


def _ready(health: dict[str, Any]) -> bool:
    """A node that answers and is past starting up (it may stay degraded: a
    one-node cluster is always one failure from an outage)."""
    return health.get("status") in ("healthy", "degraded") and not any(
        r.get("code") in _STARTING for r in health.get("reasons", []))


def _wait_ready(sup: Supervisor, stopping: threading.Event, timeout: float, root: Path) -> int | None:
    """None once every node answers past starting up (``_ready``); else the exit
    code to return."""
    deadline = time.monotonic() + timeout
    while not stopping.is_set():
        exits = sup.poll_exits()
        if exits:
            for line in exits:
                print(f"error: during start-up, {line}", file=sys.stderr)
            return 1
        try:
            if all(_ready(sup.cluster.health(n)) for n in sup.ids):
                return None
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            print(f"error: nodes not answering after {timeout}s; logs in {root}", file=sys.stderr)
            return 1
        stopping.wait(POLL)
    return 130


def _tls_section(root: Path, nodes: int) -> dict[str, Any]:
    """A new CA in ``root/certs`` (kept if there is one) and a certificate per node,
    used for the APIs and mutual peer TLS alike."""
    certs = root / "certs"
    if not (certs / "ca.pem").exists():
        ca = make_ca(certs, "configsvc cluster up CA")
        for i in range(nodes):
            ca.issue(f"n{i + 1}")
    files = {"ca_file": str(certs / "ca.pem"), "cert_file": str(certs / "{node}.pem"),
             "key_file": str(certs / "{node}-key.pem")}
    return {"api": files, "peers": files}


def _acl_bootstrap(sup: Supervisor) -> str:
    """Give the nodes the bootstrap token (by environment, never in a file): the
    caller's ``$CONFIGSVC_ACL_BOOTSTRAP_TOKEN``, else a new one — the line to
    print, which shows a generated token once."""
    given = os.environ.get(BOOTSTRAP_ENV)
    token = given or secrets.token_urlsafe(24)
    sup.set_env(BOOTSTRAP_ENV, token)
    if given:
        return f"acl: on, default deny; the bootstrap token is ${BOOTSTRAP_ENV}"
    return (f"acl: on, default deny; bootstrap token (shown once): {token}\n"
            f"  export CONFIGSVC_TOKEN={token}   # configsvc commands then use it")


def cluster_up(nodes: int, api_port: int, data_dir: str | None, ready_timeout: float = 60.0,
               netns: bool = False, acl: bool = False, tls: bool = False) -> int:
    """``tls``: HTTPS APIs and mutual peer TLS with a generated CA (loopback only)."""
    if tls and netns:
        print("error: --tls certificates name loopback addresses; it cannot be used with --netns",
              file=sys.stderr)
        return 2
    temp = None if data_dir else tempfile.TemporaryDirectory(prefix="configsvc-")
    root = Path(data_dir or temp.name)  # type: ignore[union-attr]
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        sup = Supervisor(root, nodes, api_port=api_port, netns=netns,
                         acl={"enabled": True} if acl else None,
                         tls=_tls_section(root, nodes) if tls else None)
    except NetnsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    control = ControlServer(sup, host=sup.network.gateway if sup.network else "127.0.0.1")
    sup.set_env(CONTROL_URL_ENV, control.url)
    acl_notice = _acl_bootstrap(sup) if acl else None
    state = state_file()
    try:
        control.start()
        for nid in sup.ids:
            sup.cluster.start(nid)
        failed = _wait_ready(sup, stopping, ready_timeout, root)
        if failed is not None:
            return failed
        state.write_text(json.dumps({"control": control.url, "root": str(root),
                                     "nodes": {n: sup.cluster.url(n) for n in sup.ids}}))
        print(f"ready: {nodes} nodes at {', '.join(sup.cluster.endpoints)} (data in {root})", flush=True)
        consul = ", ".join(sup.cluster.consul_url(n) for n in sup.ids)
        print(f"consul-compatible API: {consul}", flush=True)
        print(f"dashboard: {sup.cluster.url(sup.ids[0])}/ui (every node serves one)", flush=True)
        if sup.cluster.secret_file is not None:
            print(f"peer secret: {sup.cluster.secret_file} (mode 0600; peers prove it at connect time)",
                  flush=True)
        if tls:
            print(f"tls: CA {sup.cluster.ca_file}; peers use mutual TLS; clients: --ca-file "
                  f"{sup.cluster.ca_file} (or CONFIGSVC_CA_FILE)", flush=True)
        print(f"control: {control.url} (configsvc cluster kill|restart|partition|isolate|heal|status)",
              flush=True)
        if acl_notice:
            print(acl_notice, flush=True)
        else:  # with ACLs on, a management token (the bootstrap one) does this instead
            print(f"admin token: {sup.admin_token} (membership changes: "
                  f"configsvc member ... --token <it>, or export CONFIGSVC_TOKEN=<it>)", flush=True)
        while not stopping.is_set():
            with control.lock:
                exits = sup.poll_exits()
            for line in exits:
                print(line, flush=True)
            stopping.wait(POLL)
        return 0
    finally:
        print("stopping every node", flush=True)
        try:
            if json.loads(state.read_text()).get("control") == control.url:
                state.unlink()
        except (OSError, ValueError):
            pass
        control.close()
        sup.stop_all()
        if temp is not None:
            temp.cleanup()
