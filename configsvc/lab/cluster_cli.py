"""``configsvc cluster ...``: start a local cluster and break it from another terminal.

    configsvc cluster up [--nodes N] [--api-port P] [--data-dir D] [--netns]
    configsvc cluster status
    configsvc cluster kill NODE [--signal KILL|TERM|INT|STOP|CONT]
    configsvc cluster restart NODE
    configsvc cluster partition "n1 n2" "n3 n4 n5"     (groups may overlap: a bridge)
    configsvc cluster isolate NODE
    configsvc cluster one-way "n1" "n2 n3"              (drop what n1 sends to n2 and n3)
    configsvc cluster heal

Every control command finds the running ``cluster up`` through its state file
(or ``--control URL``) and prints the cluster's status after the action.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx

from configsvc.lab.control import ControlError, control_client
from configsvc.lab.supervisor import SIGNALS

__all__ = ["add_cluster_parser"]


def _up(args: argparse.Namespace) -> int:
    from configsvc.lab.cluster_up import cluster_up

    return cluster_up(args.nodes, args.api_port, args.data_dir, netns=args.netns, acl=args.acl,
                      tls=args.tls)


def render_status(status: dict[str, Any]) -> str:
    lines = [f"{'node':<6} {'state':<26} {'role':<12} api"]
    for nid, n in status["nodes"].items():
        state = f"up (pid {n['pid']})" if n["up"] else f"down ({n['exit'] or 'not started'})"
        lines.append(f"{nid:<6} {state:<26} {n['role'] or '-':<12} {n['api']}")
    lines.append(f"cut: {status['cut_text']}")
    return "\n".join(lines)


def _control(args: argparse.Namespace) -> int:
    command = args.cluster_command
    body: dict[str, Any] = {}
    match command:
        case "status":
            method, path = "GET", "/status"
        case "kill":
            method, path, body = "POST", f"/kill/{args.node}", {"signal": args.signal}
        case "restart" | "isolate":
            method, path = "POST", f"/{command}/{args.node}"
        case "partition":
            method, path = "POST", "/partition"
            body = {"groups": [g.split() for g in args.groups]}
        case "one-way":
            method, path = "POST", "/one-way"
            body = {"from": args.src.split(), "to": args.dst.split()}
        case _:
            method, path = "POST", "/heal"
    try:
        url, http = control_client(args.control)
        with http:
            answer = http.request(method, path, json=body if method == "POST" else None)
    except ControlError as exc:
        print(f"error: {exc.code}: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"error: the local cluster's control API at {url} does not answer ({exc}); "
              "is `configsvc cluster up` still running?", file=sys.stderr)
        return 1
    data = answer.json()
    if answer.status_code != 200:
        error = data.get("error", {})
        print(f"error: {error.get('code')}: {error.get('message')}", file=sys.stderr)
        return 1
    print(render_status(data))
    return 0


def add_cluster_parser(sub: Any) -> None:
    cluster = sub.add_parser("cluster", help="a local cluster: start it, break it, heal it")
    csub = cluster.add_subparsers(dest="cluster_command", required=True)
    up = csub.add_parser("up", help="start N local nodes in the foreground (Ctrl-C stops them)")
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--api-port", type=int, default=7501)
    up.add_argument("--data-dir", default=None)
    up.add_argument("--acl", action="store_true",
                    help="ACLs on, default deny; the bootstrap token from "
                         "$CONFIGSVC_ACL_BOOTSTRAP_TOKEN, else generated and printed once")
    up.add_argument("--netns", action="store_true",
                    help="each node in its own network namespace; cuts are nftables rules (root only)")
    up.add_argument("--tls", action="store_true",
                    help="HTTPS APIs and mutual peer TLS, with a CA generated into the data directory")
    up.set_defaults(func=_up)

    def control(name: str, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = csub.add_parser(name, help=help)
        p.add_argument("--control", default=None, help="the control URL (default: the running cluster's)")
        p.set_defaults(func=_control)
        return p

    control("status", "who is up, their roles, who is cut from whom")
    kill = control("kill", "stop a node's process (default SIGKILL)")
    kill.add_argument("node")
    kill.add_argument("--signal", choices=sorted(SIGNALS), default="KILL")
    control("restart", "start a node again (stopping it first if it runs)").add_argument("node")
    part = control("partition", 'cut the network into groups, e.g. "n1 n2" "n3 n4 n5"')
    part.add_argument("groups", nargs="+", help="space-separated node ids per group")
    control("isolate", "cut one node from every other").add_argument("node")
    one = control("one-way", 'drop what SRC nodes send to DST nodes, e.g. "n1" "n2 n3"')
    one.add_argument("src")
    one.add_argument("dst")
    control("heal", "remove every cut")
