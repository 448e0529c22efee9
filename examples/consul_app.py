"""An application written for Consul, pointed at configsvc: nothing but ``py-consul``.

It keeps its configuration in the KV store, registers itself with a TTL check,
reports healthy, and looks up the healthy instances of its service — the calls
a Consul client makes, unchanged. Run a cluster, give the configuration its
namespace (the one configsvc-specific step: a key's first path segment is its
namespace, and the namespace decides strong or eventual), then the program::

    configsvc cluster up --nodes 3
    configsvc ns create config --consistency strong
    CONSUL_HTTP_ADDR=127.0.0.1:7701 python examples/consul_app.py

``cluster up`` prints each node's Consul-compatible address. Services go to the
cluster's discovery namespace (``services``, eventual, created at bootstrap).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import consul


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", default="config/shop", help="where the configuration lives")
    parser.add_argument("--service", default="shop")
    parser.add_argument("--id", default=f"shop-{os.getpid()}")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    os.environ.setdefault("CONSUL_HTTP_ADDR", "127.0.0.1:7701")
    c = consul.Consul()

    # Configuration: write the defaults once (cas=0: only if absent), then read the tree.
    c.kv.put(f"{args.prefix}/db/url", "postgres://db:5432/shop", cas=0)
    c.kv.put(f"{args.prefix}/features/new-checkout", "off", cas=0)
    index, flag = c.kv.get(f"{args.prefix}/features/new-checkout")
    # Turn the feature on only if nobody changed it since we read it.
    switched = c.kv.put(f"{args.prefix}/features/new-checkout", "on", cas=flag["ModifyIndex"])
    index, entries = c.kv.get(f"{args.prefix}/", recurse=True)
    for entry in entries:
        print(f"config: {entry['Key']} = {entry['Value'].decode()}", flush=True)
    print(f"feature switched: {switched} (index {index})", flush=True)
    _, folders = c.kv.get(f"{args.prefix}/", keys=True, separator="/")
    print(f"folders: {', '.join(folders)}", flush=True)

    # Discovery: register with a TTL check, report healthy, find the healthy instances.
    c.agent.service.register(args.service, service_id=args.id, address="127.0.0.1", port=args.port,
                             tags=["v1"], check=consul.Check.ttl("30s"))
    c.agent.check.ttl_pass(f"service:{args.id}", "ready")
    _, nodes = c.health.service(args.service, passing=True)
    print("healthy: " + ", ".join(f"{n['Service']['ID']}@{n['Service']['Address']}:{n['Service']['Port']}"
                                  for n in nodes), flush=True)
    c.agent.service.deregister(args.id)
    print("deregistered", flush=True)
    return 0 if any(n["Service"]["ID"] == args.id for n in nodes) else 1


if __name__ == "__main__":
    sys.exit(main())
