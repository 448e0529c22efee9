"""A lab run, shown: a table in the terminal (rich) and a directory to keep.

``--out DIR`` holds ``report.html`` (the figures, the verdicts, and three
PNG plots made with matplotlib: success rate over time per namespace with
the fault windows shaded, latency over time, convergence after the heal),
``summary.json`` (the same figures, machine-readable, with ``violations``:
checker name -> count) and ``history.jsonl`` (every op and event).

Invariants: the report shows only what ``measure`` and ``verdicts``
computed (no figure is made up here); plotting never needs a display
(matplotlib's Agg backend); a checker that did not pass is shown in red
with its first counter-example.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from configsvc.lab.run import LabResult

__all__ = ["print_report", "write_report"]

CUTS = {"transport": "nodes' transport", "netns": "kernel (nftables)"}
#: the table's width when the output is not a wide terminal (a pipe, a log)
WIDTH = 160
LABELS = {
    "strong": "flags (strong)",
    "eventual": "config (eventual)",
    "lww": "config-lww (eventual lww)",
    "svc-strong": "services-strong (strong)",
    "svc-eventual": "services (eventual)",
}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def _num(x: float | None, unit: str = "") -> str:
    return "—" if x is None else f"{round(x, 2):g}{unit}"


def _seen(seen: dict[str, Any] | None) -> str:
    return "" if not seen else f"{seen['min']}/{seen['mean']:g}/{seen['max']}"


def _after(entry: dict[str, Any], kind: str, nodes: int) -> str:
    if kind in ("eventual", "lww"):
        return f"converged in {_num(entry.get('converged_after_heal_s'), ' s')}"
    if kind == "strong":
        return f"serving in {_num(entry.get('recovered_after_heal_s'), ' s')}"
    return f"all {nodes} listed in {_num(entry.get('view_complete_after_heal_s'), ' s')}"


def _ms(c: dict[str, Any]) -> str:
    if c["p50_ms"] is None:
        return "—" if c.get("not_ok_p50_ms") is None else f"no in {c['not_ok_p50_ms']:.0f}"
    return f"{c['p50_ms']:.0f}/{c['p99_ms']:.0f}"


def print_report(result: LabResult, console: Console | None = None, out: Path | None = None) -> None:
    """The comparison table, the discovery views and the checkers' verdicts."""
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=WIDTH)
    s = result.summary()
    sides = sorted(set(s["sides"].values()))
    phases = s["phases"]
    console.print(f"[bold]scenario {s['scenario']}[/bold]: {s['description']} "
                  f"({s['nodes']} nodes, cuts in the {CUTS[s['cuts']]}; fault "
                  f"{phases['fault_at']:.1f}s → {phases['heal_at']:.1f}s of {phases['end_at']:.1f}s)")
    if s["planted"]:
        console.print(f"[bold red]planted fault on: {', '.join(s['planted'])}[/bold red]")
    table = Table(title="What each choice costs and buys (counts and latency: during the fault)")
    for col in ("namespace", "side", "ok% before/during/after", "writes ok", "reads ok",
                "p50/p99 ms", "stale reads", "after the heal"):
        table.add_column(col, justify="left" if col in ("namespace", "side") else "right",
                         no_wrap=True)
    for kind, entry in s["namespaces"].items():
        for i, side in enumerate(sides):
            c = {p: entry["cells"][f"{p}/{side}"] for p in ("before", "during", "after")}
            d = c["during"]
            ok = "/".join(_pct(c[p]["success"]).rstrip("%") for p in ("before", "during", "after"))
            reads = f"{d['reads_ok']}/{d['reads']}"
            if "instances_seen" in d:
                reads = f"{reads}, saw {d['instances_seen']['mean']:.1f}"
            style = "red" if d["success"] is not None and d["success"] < 0.5 else None
            table.add_row(LABELS.get(kind, kind) if i == 0 else "", side, ok,
                          f"{d['writes_ok']}/{d['writes']}", reads, _ms(d), str(d["stale_reads"]),
                          _after(entry, kind, s["nodes"]) if i == 0 else "", style=style,
                          end_section=i == len(sides) - 1)
    console.print(table)
    for kind in ("svc-strong", "svc-eventual"):
        dead = s["namespaces"].get(kind, {}).get("dead_instances")
        if dead and dead["silent_instances"]:
            listed = dead["max_listed_after_last_heartbeat_s"]
            shown = ("never listed passing by the other nodes after it" if listed is None else
                     f"the other nodes still listed them passing up to {listed:g} s after it")
            console.print(f"{LABELS[kind]}: {dead['silent_instances']} instance(s) could not "
                          f"heartbeat for longer than their TTL ({dead['ttl_s']:g} s) from their "
                          f"last heartbeat; {shown}")
    bad = {k: n for k, n in s["violations"].items() if n}
    verdict = " · ".join(f"{k} {n}" for k, n in s["violations"].items())
    colour = "red" if bad or s["inconclusive"] else "green"
    console.print(f"[{colour}]checkers: {verdict}[/{colour}]"
                  + ("" if bad or s["inconclusive"] else "  [bold green]— 0 violations[/bold green]"))
    for k, n in s["counted"].items():
        split = s.get("counted_by_phase", {}).get(k)
        by_phase = f" (writes started before {split['before']} · during {split['during']} · " \
                   f"after {split['after']})" if split else ""
        console.print(f"counted (a cost, not a violation): {k.replace('_', ' ')} {n}{by_phase}")
    for line in s["inconclusive"]:
        console.print(f"[red]inconclusive: {line}[/red]")
    for name in bad:
        console.print(f"[red]{name}, first counter-example:[/red]")
        for line in s["examples"].get(name, [])[:10]:
            console.print(f"  {line}", markup=False, highlight=False)
    errors = [e for e in result.history.events if e.what == "client-error"]
    if errors:
        console.print(f"[red]{len(errors)} answer(s) not as documented; first: "
                      f"{errors[0].detail}[/red]", highlight=False)
    if out is not None:
        console.print(f"report: {out / 'report.html'}")


# ---------------------------------------------------------------------- files


def write_report(result: LabResult, out: Path) -> Path:
    """Write ``report.html``, its plots, ``summary.json`` and ``history.jsonl`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    result.history.write(out / "history.jsonl")
    from configsvc.lab.plots import plot_all

    plots = plot_all(summary, out)
    (out / "report.html").write_text(_html(summary, plots, result))
    return out / "report.html"


def _html(s: dict[str, Any], plots: list[str], result: LabResult) -> str:
    e = html.escape
    sides = sorted(set(s["sides"].values()))
    rows = []
    for kind, entry in s["namespaces"].items():
        for phase in ("before", "during", "after"):
            for side in sides:
                c = entry["cells"][f"{phase}/{side}"]
                seen = c.get("instances_seen")
                rows.append(
                    f"<tr class='{phase}'><td>{e(LABELS.get(kind, kind))}</td><td>{phase}</td>"
                    f"<td>{e(side)}</td><td>{c['ops']}</td><td>{_pct(c['success'])}</td>"
                    f"<td>{c['writes_ok']}/{c['writes']}</td><td>{c['reads_ok']}/{c['reads']}</td>"
                    f"<td>{c['unknown']}</td><td>{_num(c['p50_ms'])}</td><td>{_num(c['p99_ms'])}</td>"
                    f"<td>{_num(c.get('not_ok_p50_ms'))}</td>"
                    f"<td>{c['stale_reads']}</td>"
                    f"<td>{_seen(seen)}</td></tr>")
    after = "".join(f"<li>{e(LABELS.get(k, k))}: {e(_after(v, k, s['nodes']))}</li>"
                    for k, v in s["namespaces"].items())
    verdicts = "".join(
        f"<li class='{'bad' if n else 'good'}'>{e(k)}: {n}</li>" for k, n in s["violations"].items())
    verdicts += "".join(
        f"<li>{e(k)} (counted, a cost of LWW): {n} "
        f"{e(json.dumps(s.get('counted_by_phase', {}).get(k, {})))}</li>"
        for k, n in s["counted"].items())
    verdicts += "".join(f"<li class='bad'>inconclusive: {e(x)}</li>" for x in s["inconclusive"])
    examples = "".join(f"<h3>{e(k)}</h3><pre>{e(chr(10).join(v))}</pre>" for k, v in s["examples"].items())
    events = "".join(f"<li>{ev.at:.2f}s {e(ev.what)} {e(json.dumps(ev.detail)) if ev.detail else ''}</li>"
                     for ev in result.history.events)
    images = "".join(f"<p><img src='{e(p)}' alt='{e(p)}'></p>" for p in plots)
    sides_text = ", ".join(f"{n}: {side}" for n, side in sorted(s["sides"].items()))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>configsvc lab: {e(s['scenario'])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 75em; }}
table {{ border-collapse: collapse; font-size: 90%; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
td:nth-child(-n+3) {{ text-align: left; }}
tr.during {{ background: #fff3e0; }}
.bad {{ color: #b00020; font-weight: bold; }} .good {{ color: #1b5e20; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>Partition lab: {e(s['scenario'])}</h1>
<p>{e(s['description'])}. {s['nodes']} nodes ({e(sides_text)}); the network was cut in the
{e(CUTS[s['cuts']])}.
Fault from {s['phases']['fault_at']:.1f}s to {s['phases']['heal_at']:.1f}s, run ends at
{s['phases']['end_at']:.1f}s; {s['ops']} operations recorded.
{'<b class="bad">Planted fault on: ' + e(', '.join(s['planted'])) + '</b>' if s['planted'] else ''}</p>
<h2>Checkers</h2><ul>{verdicts}</ul>
{images}
<h2>After the heal</h2><ul>{after}</ul>
<h2>Per namespace × phase × side</h2>
<table><tr><th>namespace</th><th>phase</th><th>side</th><th>ops</th><th>success</th>
<th>writes ok</th><th>reads ok</th><th>unknown</th><th>p50 ms</th><th>p99 ms</th>
<th>not ok: p50 ms to fail</th>
<th>stale reads</th><th>instances seen min/mean/max</th></tr>
{''.join(rows)}</table>
<p>Stale read: a successful read that misses a write acknowledged before it began.
Unknown: no answer in time, or 504 (the write may have applied; the checkers treat it so).</p>
{('<h2>Counter-examples</h2>' + examples) if examples else ''}
<h2>Timeline</h2><ul>{events}</ul>
<p>Files: <a href="summary.json">summary.json</a>, <a href="history.jsonl">history.jsonl</a>.</p>
</body></html>
"""
