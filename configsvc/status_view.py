"""``configsvc status``: the cluster at a glance, rendered as rich tables.

The data is ``GET /v1/cluster/status`` of one node (``configsvc.http.cluster_view``):
that node's report and the last report of each peer it could ask. The first
line names the node asked, the cluster's status and how old the peers'
reports are; then three tables: nodes, namespaces, reasons. A node that did
not answer shows what the node asked knows of it (reachable or not) and why.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["render_status"]

_STYLE = {"healthy": "green", "degraded": "yellow", "unavailable": "red", "warning": "yellow"}


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _styled(word: object) -> str:
    text = _cell(word)
    style = _STYLE.get(text)
    return f"[{style}]{text}[/{style}]" if style else text


def nodes_table(status: dict[str, Any]) -> Table:
    table = Table(title="nodes", title_justify="left")
    for column in ("id", "address", "role", "ballot", "commit", "applied", "lag", "health",
                   "reachable", "report"):
        table.add_column(column, justify="right" if column in ("commit", "applied", "lag") else "left")
    for row in status["nodes"]:
        if row["answered"]:
            report = "now" if row["age_ms"] == 0 else f"{row['age_ms']:,} ms old"
        else:
            report = f"none: {row['error']}" if row.get("error") else "none"
        table.add_row(
            row["id"], _cell(row["api"]), _cell(row.get("role")), _cell(row.get("ballot")),
            _cell(row.get("commit_index")), _cell(row.get("applied_index")), _cell(row.get("lag")),
            _styled(row.get("status")), _cell(row["reachable"]), report,
        )
    return table


def namespaces_table(status: dict[str, Any]) -> Table:
    table = Table(title="namespaces", title_justify="left")
    for column in ("namespace", "consistency", "keys", "digests agree"):
        table.add_column(column, justify="right" if column == "keys" else "left")
    for ns in status["namespaces"]:
        agree = ns["digests_agree"]
        if ns["consistency"] == "strong":
            shown = "n/a"  # strong replicas apply one log; compared by state hash, not digest
        elif agree is None:
            shown = "unknown"
        else:
            shown = "[green]yes[/green]" if agree else "[red]no[/red]"
        table.add_row(ns["name"], ns["consistency"], _cell(ns["keys"]), shown)
    return table


def reasons_table(status: dict[str, Any]) -> Table:
    table = Table(title="reasons", title_justify="left")
    for column in ("severity", "reason", "code", "reported by"):
        table.add_column(column)
    for r in status["reasons"]:
        table.add_row(_styled(r.get("severity")), str(r.get("message")), str(r.get("code")),
                      ", ".join(r.get("reported_by", [])))
    return table


def render_status(status: dict[str, Any], console: Console) -> None:
    """Print ``status`` (``/v1/cluster/status``) as a headline and three tables."""
    console.print(f"cluster {_styled(status['status'])} (asked {status['node']})")
    console.print(nodes_table(status))
    console.print(namespaces_table(status))
    if status["reasons"]:
        console.print(reasons_table(status))
    else:
        console.print("reasons: none")
