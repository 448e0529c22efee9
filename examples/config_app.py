"""An application that runs on its configuration document and reloads it on every change.

Its configuration is the keys under a prefix of a *strong* namespace, fetched
as one document (``GET /v1/config/{ns}/{prefix}``): every node answers the
same, latest version, so a fleet never flaps between an old and a new
setting. A blocking fetch wakes on each change; a version the application
cannot use is rejected and it keeps running on the last good one. ::

    configsvc cluster up --nodes 3
    configsvc kv put config myapp/greeting hello    # after: configsvc ns create config --consistency strong
    configsvc kv put config myapp/workers 4
    python examples/config_app.py --prefix myapp
    configsvc kv put config myapp/workers 8         # the application reloads

Ctrl-C (or SIGTERM) stops it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from configsvc.client import Client, ClientError

DEFAULT_ENDPOINTS = ["http://127.0.0.1:7501", "http://127.0.0.1:7502", "http://127.0.0.1:7503"]


@dataclass(frozen=True)
class Settings:
    """What the application runs on, checked before it is used."""

    greeting: str
    workers: int

    @classmethod
    def parse(cls, document: Any) -> Settings:
        """Raises ValueError saying what is wrong with ``document``."""
        if not isinstance(document, dict):
            raise ValueError("the configuration must be a mapping")
        workers = document.get("workers", "1")
        if not isinstance(workers, str) or not workers.isdigit() or not 1 <= int(workers) <= 64:
            raise ValueError(f"workers must be a number from 1 to 64, not {workers!r}")
        return cls(greeting=str(document.get("greeting", "hello")), workers=int(workers))


def run(client: Client, ns: str, prefix: str) -> None:
    """Apply every new version of the document; never stop on a bad one."""
    current: Settings | None = None
    version = 0
    while True:
        try:
            for doc in client.config_watch(ns, prefix, wait=30):
                try:
                    settings = Settings.parse(doc.data)
                except ValueError as exc:
                    print(f"rejected {doc.etag}: {exc}; still running on {current}", flush=True)
                    continue
                version += 1
                current = settings
                print(f"config v{version}: {json.dumps(doc.data, sort_keys=True)}", flush=True)
        except ClientError as exc:
            # e.g. 409 document_conflict: the keys do not form a document right now.
            print(f"configuration unavailable ({exc}); still running on {current}", flush=True)
            time.sleep(1.0)  # back off before fetching again


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespace", default="config", help="a strong namespace (created if missing)")
    parser.add_argument("--prefix", default="myapp")
    parser.add_argument("--endpoint", action="append", default=None, help="repeatable")
    args = parser.parse_args(argv)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with Client(args.endpoint or DEFAULT_ENDPOINTS) as client:
        client.create_namespace(args.namespace, "strong")  # idempotent
        try:
            run(client, args.namespace, args.prefix)
        except KeyboardInterrupt:
            print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
