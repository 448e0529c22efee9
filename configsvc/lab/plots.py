"""The report's PNG plots, drawn with matplotlib from ``summary.json``'s figures.

- ``success.png``: success rate per second, one panel per namespace, one line
  per side, the fault windows shaded: the first look at what each choice means;
- ``latency.png``: p50 and worst latency per second of the successful ops;
- ``convergence.png``: per node, how many events it was missing of what the
  cluster had seen at the heal, around the heal.

Invariants: drawing needs no display (the Agg backend, chosen before pyplot
is imported); every figure is closed after saving (no leak across runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["plot_all"]

#: one line style per side, so equal rates on two sides stay visible
STYLES = ["-", "--", ":", "-."]
TITLES = {
    "strong": "flags — strong (Multi-Paxos)",
    "eventual": "config — eventual (causal, multi-value)",
    "lww": "config-lww — eventual, last writer wins",
    "svc-strong": "services-strong — strong discovery",
    "svc-eventual": "services — eventual discovery",
}


def _shade(ax: Any, windows: list[list[float]], transitions: list[list[float]] | None = None) -> None:
    """The fault windows, and (hatched) the stretches while a cut or heal was
    being put in force node by node."""
    for i, (a, b) in enumerate(windows):
        ax.axvspan(a, b, color="tab:red", alpha=0.12, lw=0, label="fault" if i == 0 else None)
    for i, (a, b) in enumerate(transitions or []):
        ax.axvspan(a, b, color="tab:red", alpha=0.05, hatch="//", lw=0,
                   label="cut or heal being applied" if i == 0 else None)


def _success(s: dict[str, Any], out: Path) -> str:
    kinds = list(s["namespaces"])
    fig, axes = plt.subplots(len(kinds), 1, figsize=(10, 1.9 * len(kinds)), sharex=True, squeeze=False)
    for ax, kind in zip(axes[:, 0], kinds, strict=True):
        series = s["namespaces"][kind]["series"]
        _shade(ax, s["fault_windows"], s.get("transition_windows"))
        for i, (side, values) in enumerate(series["success"].items()):
            ax.plot(series["t"], [None if v is None else 100 * v for v in values], label=side,
                    lw=2.2 - 0.5 * i, ls=STYLES[i % len(STYLES)], marker=".", ms=4)
        ax.set_ylim(-5, 105)
        ax.set_ylabel("ok %")
        ax.set_title(TITLES.get(kind, kind), fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="lower left", fontsize=8, ncol=4)
    axes[-1, 0].set_xlabel("seconds since the run started")
    fig.suptitle(f"Success rate per second — {s['scenario']}: {s['description']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "success.png", dpi=90)
    plt.close(fig)
    return "success.png"


def _latency(s: dict[str, Any], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(10, 3.6))
    _shade(ax, s["fault_windows"], s.get("transition_windows"))
    for kind, entry in s["namespaces"].items():
        series = entry["series"]
        line = ax.plot(series["t"], series["p50_ms"], label=f"{kind} p50", lw=1.5)
        ax.plot(series["t"], series["max_ms"], ls=":", color=line[0].get_color(), lw=1,
                label=f"{kind} max")
    ax.set_yscale("log")
    ax.set_ylabel("latency of ok ops (ms)")
    ax.set_xlabel("seconds since the run started")
    ax.set_title("Latency per second (successful operations)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=90)
    plt.close(fig)
    return "latency.png"


def _convergence(s: dict[str, Any], out: Path) -> str:
    conv = s.get("convergence", {})
    heal = s["phases"]["heal_at"]
    fig, ax = plt.subplots(figsize=(10, 3.2))
    for node, points in conv.get("behind", {}).items():
        shown = [(t - heal, n) for t, n in points if t - heal >= -2]
        if shown:
            ax.step([t for t, _ in shown], [n for _, n in shown], where="post", label=node)
    ax.axvline(0, color="black", ls="--", lw=1.2, label="heal")
    seconds = conv.get("seconds")
    ax.set_xlim(-2, max(3.0, 3 * (seconds or 1) + 1))
    when = "not within the run" if seconds is None else f"{seconds:g} s after the heal"
    ax.set_title(f"Eventual store: events each node was missing of what any node had seen "
                 f"at the heal — converged {when}", fontsize=10)
    ax.set_xlabel("seconds from the heal")
    ax.set_ylabel("events missing")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=6)
    fig.tight_layout()
    fig.savefig(out / "convergence.png", dpi=90)
    plt.close(fig)
    return "convergence.png"


def plot_all(summary: dict[str, Any], out: Path) -> list[str]:
    """Draw every plot into ``out``; returns their file names, in reading order."""
    return [_success(summary, out), _latency(summary, out), _convergence(summary, out)]
