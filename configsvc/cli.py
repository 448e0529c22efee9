"""The ``configsvc`` command: one entry point for every tool."""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

#: the ACL token commands present when ``--token`` is not given
TOKEN_ENV = "CONFIGSVC_TOKEN"


def _sim(args: argparse.Namespace) -> int:
    from configsvc.sim.runner import run_seeds

    seeds = [args.seed] if args.seed is not None else list(range(args.start, args.start + args.seeds))
    if args.store == "planted":
        from configsvc.sim.planted import table

        return table(seeds, args.only or None, skip_controls=args.skip_control)
    module = importlib.import_module(f"configsvc.sim.{args.store}_sim")
    summary = run_seeds(args.store, module.run_seed, seeds, as_json=args.json, fold=module.FOLD)
    return 1 if summary.failures else 0


def _demo(args: argparse.Namespace) -> int:
    if args.simulated:
        if args.out is not None:
            print("error: --out is for the real demo, not --simulated", file=sys.stderr)
            return 2
        code: int = importlib.import_module("configsvc.sim.narrated").main()
        return code
    from configsvc.demo import main as demo_main

    return demo_main(out=args.out)


def _lab(args: argparse.Namespace) -> int:
    """``configsvc lab run``: a measured scenario; exit 1 if any checker found a violation."""
    from pathlib import Path

    from configsvc.lab.netns import NetnsError
    from configsvc.lab.report import print_report, write_report
    from configsvc.lab.run import LabError, run_lab
    from configsvc.lab.scenarios import SCENARIOS

    if args.lab_command == "scenarios":
        for name, scenario in SCENARIOS.items():
            print(f"{name}\t{scenario.summary}")
        return 0
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        print(f"error: --out {out} exists and is not a directory", file=sys.stderr)
        return 2
    try:
        result = run_lab(args.scenario, args.nodes, args.duration, plant=args.plant, seed=args.seed,
                         netns=args.netns,
                         progress=lambda text: print(f"lab: {text}", file=sys.stderr, flush=True))
    except (LabError, NetnsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TimeoutError as exc:  # the cluster did not come up or settle in time
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if out is not None:
        write_report(result, out)
    if args.json:
        print(json.dumps(result.summary(), sort_keys=True))
    else:
        print_report(result, out=out)
    failed = any(result.verdicts.violations.values()) or result.verdicts.inconclusive
    return 1 if failed else 0


def _add_lab(sub: Any) -> None:
    lab = sub.add_parser("lab", help="the partition lab: measured runs of scenarios (docs/lab.md)")
    lsub = lab.add_subparsers(dest="lab_command", required=True)
    lsub.add_parser("scenarios", help="list the scenarios")
    run = lsub.add_parser("run", help="run a scenario on a local cluster and report what it cost")
    run.add_argument("--scenario", default="split", help="see `configsvc lab scenarios` (default: split)")
    run.add_argument("--nodes", type=int, default=5, help="node processes (3-9, default 5)")
    run.add_argument("--duration", type=float, default=60.0,
                     help="seconds: before, during and after the fault (at least 10, default 60)")
    run.add_argument("--out", default=None, metavar="DIR",
                     help="write report.html, its plots, summary.json and history.jsonl here")
    run.add_argument("--plant", action="append", default=[], metavar="FAULT",
                     help="test only: switch on a planted fault in the nodes "
                          "(stale-follower-reads), to see the checkers fail")
    run.add_argument("--seed", type=int, default=1, help="the workload's random choices")
    run.add_argument("--json", action="store_true", help="print summary.json instead of the table")
    run.add_argument("--netns", action="store_true",
                     help="real partitions: each node in its own network namespace, cuts as "
                          "nftables rules that drop packets (root only)")
    lab.set_defaults(func=_lab)


#: glibc's ``mallopt`` parameter number of ``M_MMAP_THRESHOLD``
_M_MMAP_THRESHOLD = -3


def _fixed_mmap_threshold(size: int = 128 << 10) -> None:
    """Serve every allocation of ``size`` bytes or more with its own mmap, returned to
    the system when freed.

    glibc raises the threshold each time such a block is freed (up to 32 MiB), so after
    the first snapshot a node's next snapshots, log rewrites and large messages come
    from the heap, which keeps its high-water mark: 15 MB of resident memory per
    snapshot of 100,000 keys. Setting it explicitly turns that adjustment off. A no-op
    where there is no glibc."""
    if sys.platform != "linux":
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # musl has no mallopt
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, size)


def _serve_entry() -> Any:
    """``configsvc.serve.serve``, imported with no more than a node needs, in a
    process whose large buffers go back to the system (``_fixed_mmap_threshold``).

    httpx imports its command-line tool (rich, click, pygments: ~3 MB resident,
    70 modules) whenever they are installed: a node never uses it."""
    _fixed_mmap_threshold()
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    from configsvc.serve import serve

    return serve


def _serve(args: argparse.Namespace) -> int:
    code: int = _serve_entry()(args.config, args.node, args.initial_cluster_state)
    return code


def _node_reset(args: argparse.Namespace) -> int:
    from configsvc.config import load_config
    from configsvc.datadir import reset

    config = load_config(args.config)
    data_dir = config.data_dir(args.node)
    reset(data_dir, config.cluster_id, args.node)
    print(f"reset {args.node}: store data removed from {data_dir}; on its next start it "
          "rejoins as a non-voting learner (it votes again only through a membership change)")
    return 0


def _client(args: argparse.Namespace) -> Any:
    from configsvc.client import Client

    return Client(args.endpoint, token=args.token or os.environ.get(TOKEN_ENV) or None,
                  ca_file=args.ca_file)


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _ns(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.ns_command == "create":
            _print(client.create_namespace(args.name, args.consistency, args.merge))
        else:
            for ns in client.namespaces():
                print(f"{ns['name']}\t{ns['consistency']}")
    return 0


def _text(kv: dict[str, Any]) -> str:
    """A key's value as text: strong ``value``; eventual, every sibling joined by `` | ``."""
    if "siblings" in kv:
        return " | ".join(base64.b64decode(s["value"]).decode("utf-8", "replace") for s in kv["siblings"])
    return base64.b64decode(kv.get("value") or "").decode("utf-8", "replace")


def _kv(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.kv_command == "put":
            _print(client.put(args.ns, args.key, args.value, cas=args.cas))
        elif args.kv_command == "get":
            data = client.get_kv(args.ns, args.key, **({"consistency": "stale"} if args.stale else {}))
            kv = data.get("kv", data)  # strong: {"kv": ...}; eventual: the key itself
            if kv is None or ("siblings" in kv and not kv["siblings"]):
                print(f"error: key_not_found: {args.ns}/{args.key}", file=sys.stderr)
                return 1
            print(_text(kv))
        elif args.kv_command == "del":
            _print(client.delete(args.ns, args.key))
        elif args.kv_command == "list":
            for kv in client.list(args.ns, args.prefix or ""):
                print(f"{kv['key']}\t{_text(kv)}")
        elif args.kv_command == "watch":
            for kvs in client.watch(args.ns, args.prefix or ""):
                for kv in kvs:
                    revision = f"{kv['mod_revision']}\t" if "mod_revision" in kv else ""
                    print(f"{revision}{kv['key']}\t{_text(kv)}", flush=True)
                print("--", flush=True)
    return 0


def _svc(args: argparse.Namespace) -> int:
    """``configsvc svc register|deregister|list|watch`` (docs/discovery.md)."""
    with _client(args) as client:
        if args.svc_command == "register":
            return _svc_register(client, args)
        if args.svc_command == "deregister":
            _print(client.deregister(args.ns, args.service, args.id))
        elif args.svc_command == "list" and args.service is None:
            for name, s in client.services(args.ns).items():
                print(f"{name}\t{s['passing']}/{s['instances']} passing\t{','.join(s['tags'])}")
        elif args.svc_command == "list":
            for inst in client.instances(args.ns, args.service, passing=args.passing):
                print(_instance_line(inst))
        else:
            for instances in client.watch_instances(args.ns, args.service, passing=args.passing):
                for inst in instances:
                    print(_instance_line(inst), flush=True)
                print("--", flush=True)
    return 0


def _instance_line(inst: dict[str, Any]) -> str:
    return (f"{inst['instance_id']}\t{inst['address']}:{inst['port']}\t{inst['status']}"
            f"\t{','.join(inst['tags'])}\t{inst['output']}")


def _svc_register(client: Any, args: argparse.Namespace) -> int:
    """Register; with ``--heartbeat``, heartbeat until Ctrl-C or SIGTERM, then deregister."""
    import signal
    import time

    meta = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"error: --meta wants KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        meta[key] = value
    check = None
    if args.http:
        check = {"http": args.http, "interval": args.interval}
        if args.timeout is not None:
            check["timeout"] = args.timeout
    keep_alive = args.heartbeat is not None
    if keep_alive and args.ttl is None:
        print("error: --heartbeat needs --ttl", file=sys.stderr)
        return 2
    status = args.status or ("passing" if keep_alive else None)
    _print(client.register(args.ns, args.service, args.id, address=args.address, port=args.port,
                           tags=args.tag, meta=meta, ttl=args.ttl,
                           deregister_after=args.deregister_after, check=check, status=status))
    if not keep_alive:
        return 0
    period = args.heartbeat or args.ttl / 3

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"heartbeating every {period:g}s; Ctrl-C deregisters", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(period)  # the heartbeat period
            client.heartbeat(args.ns, args.service, args.id)
    except KeyboardInterrupt:
        client.deregister(args.ns, args.service, args.id)
        print(f"deregistered {args.service}/{args.id}", file=sys.stderr)
        return 0

def _config(args: argparse.Namespace) -> int:
    """``configsvc config get NS PREFIX --format yaml|json``: the document as served."""
    with _client(args) as client:
        doc = client.config_get(args.ns, args.prefix, format=args.format)
    assert doc is not None  # no If-None-Match was sent: never a 304
    sys.stdout.write(doc.text)
    return 0


def _add_config(sub: Any, endpoint: Any) -> None:
    config = sub.add_parser("config", help="config documents: the keys under a prefix as one document")
    csub = config.add_subparsers(dest="config_command", required=True)
    get = csub.add_parser("get", help="print the keys under PREFIX as one JSON or YAML document")
    get.add_argument("ns")
    get.add_argument("prefix", nargs="?", default="", help="a folder of keys ('' = all)")
    get.add_argument("--format", choices=["json", "yaml"], default="json")
    endpoint(get)
    config.set_defaults(func=_config)


def _status(args: argparse.Namespace) -> int:
    """The cluster at a glance from one node (``configsvc.status_view``)."""
    from rich.console import Console

    from configsvc.status_view import render_status

    with _client(args) as client:
        status = client.cluster_status()
    if args.json:
        _print(status)
    else:
        render_status(status, Console(width=args.width, soft_wrap=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="configsvc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run one node")
    serve.add_argument("--config", required=True)
    serve.add_argument("--node", required=True)
    serve.add_argument(
        "--initial-cluster-state", choices=["new", "existing"], default="existing",
        help="'new' only for the first start of a brand-new cluster (an empty data "
             "directory may then bootstrap); ignored once the data directory is marked",
    )
    serve.set_defaults(func=_serve)

    node = sub.add_parser("node", help="operations on one node's data directory")
    nodesub = node.add_subparsers(dest="node_command", required=True)
    node_reset = nodesub.add_parser(
        "reset", help="wipe a stopped node's data; it rejoins as a non-voting learner"
    )
    node_reset.add_argument("--config", required=True)
    node_reset.add_argument("--node", required=True)
    node_reset.set_defaults(func=_node_reset)

    from configsvc.lab.cluster_cli import add_cluster_parser

    add_cluster_parser(sub)
    _add_secret(sub)

    def endpoint(p: argparse.ArgumentParser) -> None:
        """The options of every command that talks to a node: where, and as whom."""
        p.add_argument("--endpoint", default="http://127.0.0.1:7501")
        p.add_argument("--token", default=None,
                       help=f"the ACL token to present (default: ${TOKEN_ENV}; docs/acl.md)")
        _add_ca_file(p)

    ns = sub.add_parser("ns", help="namespaces")
    nsub = ns.add_subparsers(dest="ns_command", required=True)
    create = nsub.add_parser("create")
    create.add_argument("name")
    create.add_argument("--consistency", choices=["strong", "eventual"], required=True)
    create.add_argument("--merge", choices=["mvr", "lww"], default="mvr")
    endpoint(create)
    endpoint(nsub.add_parser("list"))
    ns.set_defaults(func=_ns)

    kv = sub.add_parser("kv", help="keys")
    ksub = kv.add_subparsers(dest="kv_command", required=True)
    put = ksub.add_parser("put")
    put.add_argument("ns")
    put.add_argument("key")
    put.add_argument("value")
    put.add_argument("--cas", type=int, default=None)
    get = ksub.add_parser("get")
    get.add_argument("ns")
    get.add_argument("key")
    get.add_argument("--stale", action="store_true")
    delete = ksub.add_parser("del")
    delete.add_argument("ns")
    delete.add_argument("key")
    for name in ("list", "watch"):
        p = ksub.add_parser(name)
        p.add_argument("ns")
        p.add_argument("prefix", nargs="?", default="")
    for p in (put, get, delete, *[ksub.choices[n] for n in ("list", "watch")]):
        endpoint(p)
    kv.set_defaults(func=_kv)

    _svc_parser(sub, endpoint)
    _add_config(sub, endpoint)
    from configsvc.acl_cli import add_acl_parser

    add_acl_parser(sub, endpoint)
    from configsvc.upgrade_cli import add_upgrade_parser

    add_upgrade_parser(sub, endpoint)
    from configsvc import member_cli  # configsvc member ...

    member_cli.add_parser(sub, endpoint)
    from configsvc import snapshot_cli  # configsvc snapshot save|inspect|restore

    snapshot_cli.add_parser(sub, endpoint)

    status = sub.add_parser("status", help="the cluster at a glance: nodes, namespaces, reasons")
    status.add_argument("--json", action="store_true", help="the raw /v1/cluster/status answer")
    status.add_argument("--width", type=int, default=None, help="columns (default: the terminal's)")
    endpoint(status)
    status.set_defaults(func=_status)

    sim = sub.add_parser("sim", help="run the deterministic simulator over many seeds")
    sim.add_argument("store", choices=["strong", "eventual", "planted"],
                     help="planted: the detection table of the planted-bug catalogue")
    sim.add_argument("--only", action="append", default=[],
                     help="planted: only this bug (repeatable)")
    sim.add_argument("--skip-control", action="append", default=[], metavar="PROFILE",
                     help="planted: do not run this profile's control (measured already)")
    sim.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    sim.add_argument("--start", type=int, default=0, help="first seed")
    sim.add_argument("--seed", type=int, default=None, help="replay exactly this seed")
    sim.add_argument("--json", action="store_true", help="last line: one JSON summary")
    sim.set_defaults(func=_sim)

    demo = sub.add_parser("demo", help="the partition lab's default run on a real 5-node cluster")
    demo.add_argument("--simulated", action="store_true", help="a narrated run on the simulator instead")
    demo.add_argument("--out", default=None, metavar="DIR",
                      help="where to keep the report (default: a new directory under /tmp)")
    demo.set_defaults(func=_demo)
    _add_lab(sub)
    return parser


def _add_ca_file(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ca-file", default=None, metavar="PEM",
                   help="verify an https:// endpoint with this CA (default: $CONFIGSVC_CA_FILE, "
                        "else the system's CAs)")


def _secret(args: argparse.Namespace) -> int:
    """``configsvc secret generate PATH``: a new peer secret file (mode 0600)."""
    from configsvc.security import generate_secret_file

    try:
        path = generate_secret_file(args.path)
    except FileExistsError:
        print(f"error: {args.path} exists; a peer secret is never overwritten", file=sys.stderr)
        return 1
    print(f"wrote a new peer secret to {path} (mode 0600): point security.peer_secret_file "
          "at it and copy it to every node")
    return 0


def _add_secret(sub: Any) -> None:
    secret = sub.add_parser("secret", help="the cluster's peer secret")
    ssub = secret.add_subparsers(dest="secret_command", required=True)
    generate = ssub.add_parser("generate", help="write a new random peer secret file (mode 0600)")
    generate.add_argument("path")
    secret.set_defaults(func=_secret)


def _svc_parser(sub: Any, endpoint: Any) -> None:
    svc = sub.add_parser("svc", help="service discovery: register, deregister, list, watch")
    ssub = svc.add_subparsers(dest="svc_command", required=True)
    reg = ssub.add_parser("register", help="register an instance (--heartbeat: keep it alive)")
    dereg = ssub.add_parser("deregister")
    for p in (reg, dereg):
        p.add_argument("ns")
        p.add_argument("service")
        p.add_argument("id", help="instance id")
    reg.add_argument("--address", default=None, help="default: the host of the node reached")
    reg.add_argument("--port", type=int, default=0)
    reg.add_argument("--tag", action="append", default=[], help="repeatable")
    reg.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    reg.add_argument("--ttl", type=float, default=None, help="seconds a heartbeat keeps it passing")
    reg.add_argument("--heartbeat", type=float, nargs="?", const=0.0, default=None, metavar="SECONDS",
                     help="keep heartbeating (every SECONDS, default ttl/3) until Ctrl-C, then deregister")
    reg.add_argument("--deregister-after", type=float, default=None, help="seconds critical before removal")
    reg.add_argument("--http", default=None, help="an HTTP check URL, run by the node reached")
    reg.add_argument("--interval", type=float, default=10.0, help="HTTP check interval (seconds)")
    reg.add_argument("--timeout", type=float, default=None, help="HTTP check timeout (seconds)")
    reg.add_argument("--status", choices=["passing", "warning", "critical"], default=None)
    listing = ssub.add_parser("list", help="services of NS, or the instances of SERVICE")
    listing.add_argument("ns")
    listing.add_argument("service", nargs="?", default=None)
    watch = ssub.add_parser("watch", help="print the instances of SERVICE on every change")
    watch.add_argument("ns")
    watch.add_argument("service")
    for p in (listing, watch):
        p.add_argument("--passing", action="store_true", help="only instances passing their checks")
    for p in (reg, dereg, listing, watch):
        endpoint(p)
    svc.set_defaults(func=_svc)


def main(argv: Sequence[str] | None = None) -> int:
    from configsvc.client import ClientError
    from configsvc.config import ConfigError
    from configsvc.datadir import DataDirError

    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ClientError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except (ConfigError, DataDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
