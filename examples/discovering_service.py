"""A service that registers itself, stays alive with TTL heartbeats, and discovers its peers.

It lives in an *eventual* namespace: every node accepts its registration and
heartbeats even during a partition, and every node answers who is alive from
what it can still hear. Run a cluster, then two or more of these::

    configsvc cluster up --nodes 3
    python examples/discovering_service.py --name worker-1 --port 9001
    python examples/discovering_service.py --name worker-2 --port 9002 \\
        --endpoint http://127.0.0.1:7502

Each prints ``peers: ...`` (the passing instances, itself included) now and
every time they change. Ctrl-C (or SIGTERM) stops the heartbeats and deregisters.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from configsvc.client import Client, ClientError

DEFAULT_ENDPOINTS = ["http://127.0.0.1:7501", "http://127.0.0.1:7502", "http://127.0.0.1:7503"]


def heartbeat_until(stopping: threading.Event, client: Client, ns: str, service: str, name: str,
                    period: float) -> None:
    """Heartbeat every ``period`` seconds until ``stopping`` is set; a failure is reported and
    retried (the client already tried every endpoint)."""
    while not stopping.wait(period):
        try:
            client.heartbeat(ns, service, name)
        except ClientError as exc:
            print(f"heartbeat failed: {exc}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="this instance's id")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--service", default="workers")
    parser.add_argument("--namespace", default="services", help="an eventual namespace (created if missing)")
    parser.add_argument("--ttl", type=float, default=3.0, help="seconds; heartbeats every third of it")
    parser.add_argument("--endpoint", action="append", default=None, help="repeatable")
    args = parser.parse_args(argv)
    ns, service, name = args.namespace, args.service, args.name

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    endpoints = args.endpoint or DEFAULT_ENDPOINTS
    with Client(endpoints) as beats, Client(endpoints) as queries:
        beats.create_namespace(ns, "eventual")  # idempotent: exists already is fine
        beats.register(ns, service, name, port=args.port, ttl=args.ttl, deregister_after=10 * args.ttl,
                       meta={"pid": str(os.getpid())}, status="passing")
        stopping = threading.Event()
        beating = threading.Thread(target=heartbeat_until,
                                   args=(stopping, beats, ns, service, name, args.ttl / 3))
        beating.start()
        queries.token = beats.token  # read our own registration, on any node
        try:
            for instances in queries.watch_instances(ns, service, passing=True, wait=30):
                peers = " ".join(f"{i['instance_id']}@{i['address']}:{i['port']}" for i in instances)
                print(f"peers: {peers}", flush=True)
        except KeyboardInterrupt:
            pass
        finally:
            stopping.set()
            beating.join()
            beats.deregister(ns, service, name)
            print(f"deregistered {name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
