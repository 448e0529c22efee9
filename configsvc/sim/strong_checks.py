"""Checkers for the strong-store simulation, kept apart from the cluster.

They see only what an outside observer could record: the client history and,
per replica, the value applied at each slot and sampled state hashes.

- ``Observer``: every two replicas applied the same batch at every slot both
  applied, and computed the same state hash at equal applied indexes.
- ``check_history``: linearizability per key (``configsvc.sim.linearizability``).
- ``lost_writes``: every acknowledged effective write appears in the chosen log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from configsvc.sim.linearizability import UNKNOWN, KVModel, Operation, check
from configsvc.sim.strong_client import HistoryOp
from strong.commands import MalformedCommand, decode_command
from strong.messages import Batch

#: steps the linearizability search may take per seed before it says "inconclusive"
SEARCH_BUDGET = 10_000_000


class Observer:
    def __init__(self) -> None:
        self.log: dict[int, tuple[str, Batch]] = {}
        self.hashes: dict[int, tuple[str, str]] = {}
        #: (client_id, seq) of every command in ``log``, gathered as slots are
        #: first seen (while their decoding is still cached)
        self._commands: set[tuple[str, int]] = set()
        self.violation = ""
        self.excerpt: list[str] = []

    def applied(self, node: str, slot: int, batch: Batch) -> None:
        seen = self.log.get(slot)
        if seen is None:
            self.log[slot] = (node, batch)
            for data in batch:
                try:
                    cmd = decode_command(data)
                except MalformedCommand:
                    continue
                self._commands.add((cmd.client_id, cmd.seq))
        elif seen[1] != batch and not self.violation:
            self.violation = f"replicas disagree on slot {slot}"
            self.excerpt = [
                f"{seen[0]} applied {_describe(seen[1])}",
                f"{node} applied {_describe(batch)}",
            ]

    def hashed(self, node: str, index: int, digest: str) -> None:
        seen = self.hashes.get(index)
        if seen is None:
            self.hashes[index] = (node, digest)
        elif seen[1] != digest and not self.violation:
            self.violation = f"state hashes differ at applied index {index}"
            self.excerpt = [f"{seen[0]}: {seen[1]}", f"{node}: {digest}"]

    def applied_commands(self) -> set[tuple[str, int]]:
        """(client_id, seq) of every command some replica applied."""
        return set(self._commands)


def _describe(batch: Batch) -> str:
    if not batch:
        return "no-op"
    parts = []
    for data in batch[:4]:
        try:
            cmd = decode_command(data)
            parts.append(f"{cmd.client_id}#{cmd.seq} {type(cmd.op).__name__}")
        except MalformedCommand:
            parts.append("<malformed>")
    more = f" (+{len(batch) - 4} more)" if len(batch) > 4 else ""
    return "[" + ", ".join(parts) + "]" + more


def to_operations(history: list[HistoryOp]) -> list[Operation]:
    return [
        Operation(
            client=op.client,
            input=(op.key, op.input),
            output=UNKNOWN if op.ret is None else op.output,
            call=op.call,
            ret=op.ret,
        )
        for op in history
    ]


@dataclass(frozen=True)
class HistoryVerdict:
    """``violation`` is set only for a proven violation; ``inconclusive`` when the
    search ran out of budget first (which a caller must never count as a pass)."""

    violation: str | None = None
    excerpt: list[str] = field(default_factory=list)
    inconclusive: bool = False


def check_history(history: list[HistoryOp], budget: int = SEARCH_BUDGET) -> HistoryVerdict:
    """Linearizability of ``history`` per key."""
    result = check(KVModel(), to_operations(history), budget=budget)
    if result.ok:
        return HistoryVerdict(inconclusive=result.unknown)
    lines = [result.explanation] if result.explanation else []
    lines += [
        f"[{o.call:.4f} .. {'?' if o.ret is None else f'{o.ret:.4f}'}] client {o.client} "
        f"{o.input[0]} {o.input[1]!r} -> {o.output!r}"
        for o in result.excerpt
    ]
    return HistoryVerdict(f"not linearizable on key {result.key!r}", lines)


def lost_writes(history: list[HistoryOp], observer: Observer) -> list[HistoryOp]:
    applied = observer.applied_commands()
    return [
        op
        for op in history
        if op.ret is not None
        and op.input[0] != "get"
        and op.output is not False
        and (op.client_id, op.seq) not in applied
    ]
