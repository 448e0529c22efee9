"""``configsvc upgrade status``: the state-machine versions of a strong group at a glance.

Asks one node (``GET /v1/cluster/upgrade``) and prints the active and target
versions and, per voter, the range its binary supports as that node last heard
it. How the group moves between versions: ``configsvc.upgrade``; the procedure
step by step: docs/upgrades.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

__all__ = ["add_upgrade_parser", "render_status"]


def render_status(status: dict[str, Any], console: Console) -> None:
    """Print ``status`` (the JSON of ``/v1/cluster/upgrade``) as a table."""
    if "error" in status:
        console.print(f"node {status['node']}: {status['error']}")
        return
    table = Table(title=f"strong group, as seen by {status['node']}")
    table.add_column("voter")
    table.add_column("supports")
    table.add_column("report age")
    for node, support in status["nodes"].items():
        if support is None:
            table.add_row(node, "unknown (no fresh report)", "-")
        else:
            lo, hi = support["supported"]
            table.add_row(node, f"{lo}..{hi}", f"{support['report_age_s']}s")
    console.print(table)
    console.print(f"active version: {status['active_version']}   "
                  f"target: {status['target_version']}")
    if status["next_version"] is not None:
        console.print(f"the leader may switch to {status['next_version']} now")
    elif status["waiting_for"]:
        console.print(f"waiting for {', '.join(status['waiting_for'])} to support "
                      f"{status['target_version']}")


def _upgrade(args: argparse.Namespace) -> int:
    from configsvc.cli import _client
    from configsvc.client import ClientError

    try:
        with _client(args) as client:
            status = client.request("GET", "/v1/cluster/upgrade")
    except (ClientError, httpx.HTTPError, ValueError) as exc:
        print(f"configsvc upgrade status: {args.endpoint}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        render_status(status, Console())
    return 0


def add_upgrade_parser(sub: Any, endpoint: Callable[[argparse.ArgumentParser], None]) -> None:
    upgrade = sub.add_parser("upgrade", help="state-machine versions (rolling upgrades)")
    usub = upgrade.add_subparsers(dest="upgrade_command", required=True)
    status = usub.add_parser("status", help="each voter's supported range and the active version")
    endpoint(status)
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    upgrade.set_defaults(func=_upgrade)
