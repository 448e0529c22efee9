"""The lab's record: every operation a client tried, and when the network changed.

An ``Op`` is one request as the client saw it: which client, pinned to which
node, in which namespace, what it asked, ``start``/``end`` (seconds since the
run started, on the lab process's monotonic clock), and its ``outcome``:

- ``ok``: the node answered with success (a read of a missing key is ``ok``
  with ``answer`` None);
- ``failed``: the node answered with an error that says "not done" (``503``,
  ``409``, ``4xx``): the operation had no effect;
- ``unknown``: no answer in time, a broken connection after the request
  left, or ``504 outcome_unknown``: a write may or may not have taken effect,
  and every checker must treat it as possibly applied.

``Event`` is a change the scenario made (a cut, a heal, a kill, a restart).
``History`` is append-only and thread-safe; ``history.jsonl`` holds one op or
event per line, ``{"type": "op" | "event", ...}``, in the order recorded.
Invariants: ``start <= end`` for every op; ops of one client never overlap
(a client is sequential); times come from one clock.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["Event", "History", "Op", "Outcome"]

Outcome = Literal["ok", "failed", "unknown"]


@dataclass
class Op:
    client: str
    node: str
    #: the namespace's name and its kind (``strong``, ``eventual``, ``lww``,
    #: ``svc-strong``, ``svc-eventual``), so a history reads on its own
    ns: str
    kind: str
    #: get / put (keys), register / heartbeat / instances (discovery), probe
    op: str
    key: str
    start: float
    end: float
    outcome: Outcome
    #: the value a put wrote (unique per put), or None
    value: str | None = None
    #: the HTTP status (None: no answer reached the client)
    status: int | None = None
    #: what the read returned: a strong value (None: absent); eventual
    #: ``{"siblings": [[value, node, counter], ...], "context": {node: n}}``;
    #: discovery: the ids of the passing instances; a write: its dot or revision
    answer: Any = None
    #: eventual writes: the read context sent with the write (what it supersedes)
    sent_context: dict[str, int] | None = None
    #: eventual: the session token of the answer, decoded ({replica: counter})
    token: dict[str, int] | None = None
    error: str | None = None

    @property
    def latency(self) -> float:
        return self.end - self.start


@dataclass
class Event:
    at: float
    what: str
    detail: dict[str, Any] = field(default_factory=dict)


class History:
    """Append-only, shared by every client thread and the scenario."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.ops: list[Op] = []
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds since the run started (the clock every op and event uses)."""
        return time.monotonic() - self.t0

    def add(self, op: Op) -> None:
        with self._lock:
            self.ops.append(op)

    def event(self, what: str, **detail: Any) -> Event:
        ev = Event(round(self.now(), 4), what, detail)
        with self._lock:
            self.events.append(ev)
        return ev

    def snapshot(self) -> list[Op]:
        with self._lock:
            return list(self.ops)

    def select(self, kind: str | None = None, op: str | None = None) -> Iterator[Op]:
        for o in self.snapshot():
            if (kind is None or o.kind == kind) and (op is None or o.op == op):
                yield o

    def write(self, path: Path) -> None:
        with self._lock:
            ops, events = list(self.ops), list(self.events)
        lines = [json.dumps({"type": "event", **asdict(e)}, sort_keys=True) for e in events]
        lines += [json.dumps({"type": "op", **asdict(o)}, sort_keys=True) for o in ops]
        path.write_text("\n".join(lines) + "\n")

    @classmethod
    def read(cls, path: Path) -> History:
        """Load a ``history.jsonl`` (to re-check or re-plot a kept run)."""
        history = cls()
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            kind = row.pop("type")
            if kind == "event":
                history.events.append(Event(**row))
            else:
                history.ops.append(Op(**row))
        return history
