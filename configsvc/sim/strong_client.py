"""Simulated clients of the strong store and the history they record.

A client issues one operation at a time on a small key space (so operations
contend), retries on "not leader" and on timeouts with the same
``(client_id, seq)`` (the state machine makes retries idempotent), and gives
up after a deadline: a write given up has an *unknown* outcome (it may take
effect later or never); a read given up is dropped from the history.

Every written value is unique, so the linearizability checker can tell which
write a read observed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from configsvc.sim.strong_node import ClientRequest, ClientResponse
from configsvc.sim.world import World
from strong.commands import Command, encode_command
from strong.ops import Compare, Delete, Get, Put, Txn
from strong.results import CasFailed, DeleteResult, GetResult, PutResult, TxnResult


@dataclass(slots=True)
class HistoryOp:
    """One client operation. ``ret is None`` means its outcome is unknown."""

    client: int
    key: str
    input: tuple[Any, ...]
    output: Any
    call: float
    ret: float | None
    client_id: str
    seq: int
    node: str = ""

    def describe(self) -> str:
        ret = "?" if self.ret is None else f"{self.ret:.4f}"
        return (
            f"[{self.call:.4f} .. {ret}] client {self.client} {self.key} "
            f"{self.input} -> {self.output!r} (seq {self.seq}, via {self.node})"
        )


@dataclass(slots=True)
class _Pending:
    op: HistoryOp
    request: ClientRequest
    target: int
    attempt: int
    deadline: float
    #: when the current attempt times out; None while no attempt is in flight
    timeout_at: float | None = None


class SimStrongClient:
    """A closed-loop client: think, issue, wait, repeat."""

    def __init__(
        self,
        world: World,
        index: int,
        nodes: list[str],
        namespace: str,
        keys: list[str],
        history: list[HistoryOp],
        rng: random.Random,
        attempt_timeout: float = 0.25,
        give_up_after: float = 2.0,
        think: float = 0.01,
        value_padding: tuple[int, int] = (0, 0),
        read_fraction: float = 0.40,
    ) -> None:
        self.world = world
        self.index = index
        self.endpoint = f"client{index}"
        self.client_id = f"c{index}"
        self.nodes = nodes
        self.namespace = namespace
        self.keys = keys
        #: a Get is immutable: one per key serves every read of it
        self._gets = {key: Get(namespace, key.encode()) for key in keys}
        self.history = history
        self.rng = rng
        self.attempt_timeout = attempt_timeout
        self.give_up_after = give_up_after
        self.think = think
        self.value_padding = value_padding
        self.read_fraction = read_fraction
        self.seq = 0
        #: operations this client started: names each one (``op_id``) uniquely, so
        #: a late answer to an abandoned operation never matches a later one
        self.started = 0
        self.next_value = 0
        self.last_seen: dict[str, bytes | None] = {}
        self.leader_guess = rng.randrange(len(nodes))
        self.running = False
        self.pending: _Pending | None = None
        #: when this client's one timeout timer fires next (None: not armed)
        self.timer_at: float | None = None
        self.completed = 0
        self.gave_up = 0
        #: call times of reads given up (no effect, so not in the history, but
        #: the liveness checker must see them)
        self.gave_up_reads: list[float] = []
        self.max_latency = 0.0
        #: operations to run before random ones (the audit uses it)
        self.script: list[tuple[str, tuple[Any, ...]]] = []
        world.register(self.endpoint, self._receive)

    def start(self) -> None:
        self.running = True
        self.world.after(self.rng.uniform(0, self.think), self._next)

    def stop(self) -> None:
        self.running = False

    @property
    def idle(self) -> bool:
        return self.pending is None

    # ------------------------------------------------------------------ workload

    def _value(self) -> bytes:
        """A value no other write uses (the checker tells writes apart by value)."""
        self.next_value += 1
        value = f"{self.client_id}-{self.next_value}".encode()
        lo, hi = self.value_padding
        if hi:
            value += b"." * self.rng.randint(lo, hi)
        return value

    def _choose(self) -> tuple[str, tuple[Any, ...]]:
        if self.script:
            return self.script.pop(0)
        key = self.rng.choice(self.keys)
        roll = self.rng.random()
        if roll < self.read_fraction:
            return key, ("get",)
        # writes keep their old proportions among themselves
        roll = 0.40 + (roll - self.read_fraction) / (1 - self.read_fraction) * 0.60
        if roll < 0.72:
            return key, ("put", self._value())
        if roll < 0.90:
            return key, ("cas", self.last_seen.get(key), self._value())
        if roll < 0.95:
            return key, ("cas", None, self._value())
        return key, ("delete",)

    def _request(self, key: str, inp: tuple[Any, ...], op_id: int) -> ClientRequest:
        kind = inp[0]
        if kind == "get":
            return ClientRequest(op_id, self.client_id, 0, read=self._gets[key])
        ns, k = self.namespace, key.encode()
        self.seq += 1
        op: Put | Delete | Txn
        if kind == "put":
            op = Put(ns, k, inp[1])
        elif kind == "delete":
            op = Delete(ns, k)
        elif inp[1] is None:
            op = Put(ns, k, inp[2], if_mod_revision=0)
        else:
            op = Txn(
                compares=(Compare(ns, k, "value", "==", inp[1]),),
                success=(Put(ns, k, inp[2]),),
                failure=(),
            )
        return ClientRequest(op_id, self.client_id, self.seq, write=encode_command(Command(self.client_id, self.seq, op)))

    def _next(self) -> None:
        if not self.running or self.pending is not None:
            return
        key, inp = self._choose()
        self.started += 1
        op_id = self.started + 1_000_000 * self.index
        request = self._request(key, inp, op_id)
        op = HistoryOp(self.index, key, inp, None, self.world.now, None, self.client_id, request.seq)
        # Mostly follow the known leader; sometimes ask any node (as a load balancer would).
        target = self.leader_guess if self.rng.random() < 0.7 else self.rng.randrange(len(self.nodes))
        self.pending = _Pending(op, request, target, 0, self.world.now + self.give_up_after)
        self._attempt()

    def _attempt(self) -> None:
        p = self.pending
        assert p is not None
        if self.world.now >= p.deadline:
            self._give_up()
            return
        p.attempt += 1
        node = self.nodes[p.target % len(self.nodes)]
        p.op.node = node
        self.world.send(self.endpoint, node, p.request)
        p.timeout_at = self.world.now + self.attempt_timeout
        if self.timer_at is None:
            self.timer_at = p.timeout_at
            self.world.at(p.timeout_at, self._on_timer)

    def _on_timer(self) -> None:
        """The attempt in flight times out at ``timeout_at``. One timer per
        client, re-armed lazily, instead of one event per attempt (most
        attempts are answered long before their timeout)."""
        self.timer_at = None
        p = self.pending
        if p is None or p.timeout_at is None:
            return
        if p.timeout_at > self.world.now:
            self.timer_at = p.timeout_at
            self.world.at(p.timeout_at, self._on_timer)
            return
        p.timeout_at = None
        p.target += 1
        self._attempt()

    def _give_up(self) -> None:
        p = self.pending
        assert p is not None
        self.pending = None
        self.gave_up += 1
        if p.op.input[0] != "get":
            self.history.append(p.op)  # unknown outcome
        else:
            self.gave_up_reads.append(p.op.call)
        self._schedule_next()

    def _receive(self, src: str, response: Any) -> None:
        p = self.pending
        if not isinstance(response, ClientResponse) or p is None:
            return
        if response.op_id != p.request.op_id:
            return
        if response.status == "not_leader":
            hint = response.leader_hint
            if hint is not None and hint in self.nodes and hint != src:
                p.target = self.nodes.index(hint)
                delay = 0.001
            else:
                p.target += 1
                delay = 0.02
            p.attempt += 1
            p.timeout_at = None  # the attempt is answered: no timeout
            self.world.after(delay, self._retry, p, p.attempt)
            return
        self._complete(p, src, response)

    def _retry(self, p: _Pending, attempt: int) -> None:
        if self.pending is p and p.attempt == attempt:
            self._attempt()

    def _complete(self, p: _Pending, src: str, response: ClientResponse) -> None:
        self.pending = None
        self.leader_guess = self.nodes.index(src)
        op = p.op
        op.ret = self.world.now
        result = response.result
        kind = op.input[0]
        recorded = True
        match result:
            case GetResult(kv=kv):
                op.output = kv.value if kv is not None else None
                self.last_seen[op.key] = op.output
            case PutResult():
                op.output = True if kind == "cas" else "ok"
            case CasFailed():
                op.output = False
            case TxnResult(succeeded=ok):
                op.output = ok
            case DeleteResult():
                op.output = "ok"
            case _:
                recorded = False  # a definitive error: the operation had no effect
        if recorded:
            self.history.append(op)
            self.completed += 1
            self.max_latency = max(self.max_latency, op.ret - op.call)
        self._schedule_next()

    def _schedule_next(self) -> None:
        if self.running:
            self.world.after(self.rng.uniform(0, self.think), self._next)
