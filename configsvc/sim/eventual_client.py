"""A simulated client of the eventual store: one session that moves between nodes.

Each client runs operations one at a time (reads, writes with or without the
read context it last saw, deletes, prefix lists, transactions, and its own
service instance's registration, heartbeats and deregistration), always
carrying its session token. It switches nodes at random, after a timeout, and whenever a
node answers ``CausallyBehind`` (then it retries the same request
elsewhere). Every write carries a value no other write carries. Every
operation is recorded, answered or not, for the checkers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from configsvc.sim.eventual_node import ClientRequest, ClientResponse
from configsvc.sim.world import World
from eventual.instances import InstanceInfo
from eventual.requests import (
    CausallyBehind,
    Delete,
    Deregister,
    Get,
    Heartbeat,
    Instances,
    List,
    Put,
    ReadResult,
    Register,
    Request,
    Result,
    Txn,
    TxnCheck,
    TxnOp,
    TxnRead,
    TxnReadPrefix,
    TxnRemovePrefix,
    TxnWrite,
)

SERVICE = "api"


@dataclass
class HistoryOp:
    op_id: int
    client: str
    node: str
    request: Request
    token_in: str | None
    invoked: float
    completed: float | None = None
    result: Result | None = None
    #: how many nodes answered CausallyBehind before this attempt
    behind: int = 0


@dataclass
class Workload:
    kv_namespace: str = "cfg"
    lww_namespace: str = "flags"
    svc_namespace: str = "svc"
    keys: tuple[str, ...] = ("a", "b", "c", "d/x", "d/y")
    think: tuple[float, float] = (0.01, 0.12)
    timeout: float = 1.0
    switch: float = 0.25
    #: the share of operations that are transactions
    txn: float = 0.06


@dataclass
class SimEventualClient:
    world: World
    id: str
    nodes: list[str]
    rng: random.Random
    history: list[HistoryOp]
    workload: Workload = field(default_factory=Workload)
    stop_at: float = 0.0

    def __post_init__(self) -> None:
        self.home = self.rng.choice(self.nodes)
        self.node = self.home
        self.token: str | None = None
        self.contexts: dict[tuple[str, str], str] = {}
        self.seq = 0
        self.current: HistoryOp | None = None
        self.registered = False
        self.world.register(self.id, self._on_message)

    def start(self) -> None:
        self.world.after(self.rng.uniform(*self.workload.think), self._next)

    # ------------------------------------------------------------------ ops

    def _txn(self) -> Txn:
        """A transaction of one of three shapes: a pair (``t/x`` and ``t/y`` written
        together, sometimes behind a check that often fails), the ``d/`` folder
        replaced at once, or a read-check-write on the pair."""
        w, v = self.workload, f"{self.id}#{self.seq}"
        r = self.rng.random()
        ops: list[TxnOp]
        if r < 0.5:
            ops = [TxnWrite("t/x", f"{v}/x".encode()), TxnWrite("t/y", f"{v}/y".encode())]
            if self.rng.random() < 0.3:
                ops.insert(0, TxnCheck(self.rng.choice(w.keys), 0))
        elif r < 0.8:
            ops = [TxnRemovePrefix("d/"), TxnWrite(self.rng.choice(("d/x", "d/y")), v.encode()),
                   TxnReadPrefix("d/")]
        else:
            ops = [TxnRead("t/x"), TxnWrite("t/x", None), TxnCheck("t/x", 0),
                   TxnWrite("t/y", f"{v}/y".encode(), if_version=0)]
        return Txn(w.kv_namespace, tuple(ops))

    def _choose(self) -> Request:
        w = self.workload
        if self.rng.random() < w.txn:
            return self._txn()
        r = self.rng.random()
        if r < 0.12:
            if not self.registered or self.rng.random() < 0.2:
                info = InstanceInfo(address=f"10.0.0.{self.seq % 250}", port=8000 + self.seq,
                                    tags=(self.id,), ttl=1.0,
                                    deregister_after=self.rng.choice([0.0, 2.5]))
                return Register(w.svc_namespace, SERVICE, self.id, info)
            return Heartbeat(w.svc_namespace, SERVICE, self.id)
        if r < 0.14:
            return Deregister(w.svc_namespace, SERVICE, self.id)
        if r < 0.20:
            return Instances(w.svc_namespace, SERVICE)
        if r < 0.25:
            return List(w.kv_namespace, self.rng.choice(("d/", "t/")))
        ns = w.lww_namespace if self.rng.random() < 0.25 else w.kv_namespace
        key = self.rng.choice(w.keys)
        if r < 0.55:
            return Get(ns, key)
        ctx = self.contexts.get((ns, key)) if self.rng.random() < 0.8 else None
        if r < 0.62:
            return Delete(ns, key, ctx)
        return Put(ns, key, f"{self.id}#{self.seq}".encode(), ctx)

    def _next(self) -> None:
        if self.world.now >= self.stop_at:
            return
        self.seq += 1
        if self.rng.random() < self.workload.switch:
            self.node = self.rng.choice(self.nodes)
        self._invoke(self._choose(), behind=0)

    def _invoke(self, request: Request, behind: int) -> None:
        op = HistoryOp(len(self.history), self.id, self.node, request, self.token,
                       self.world.now, behind=behind)
        self.history.append(op)
        self.current = op
        self.world.send(self.id, self.node, ClientRequest(op.op_id, request, self.token))
        self.world.after(self.workload.timeout, lambda: self._timeout(op))

    def _timeout(self, op: HistoryOp) -> None:
        if self.current is not op:
            return
        self.current = None
        self.node = self.rng.choice([n for n in self.nodes if n != op.node] or self.nodes)
        self._next()

    def _on_message(self, src: str, message: object) -> None:
        if not isinstance(message, ClientResponse):
            return
        op = self.current
        if op is None or op.op_id != message.op_id:
            return  # a late or duplicated answer
        self.current = None
        op.completed = self.world.now
        op.result = message.result
        result = message.result
        if isinstance(result, CausallyBehind):
            if op.behind + 1 < 2 * len(self.nodes):
                self.node = self.rng.choice([n for n in self.nodes if n != op.node] or self.nodes)
                self.world.after(0.01, lambda: self._invoke(op.request, op.behind + 1))
            else:
                self.world.after(self.rng.uniform(*self.workload.think), self._next)
            return
        token = getattr(result, "token", None)
        if isinstance(token, str):
            self.token = token
        if isinstance(result, ReadResult) and isinstance(op.request, Get):
            self.contexts[(op.request.namespace, op.request.key)] = result.context
        if isinstance(op.request, Register):
            self.registered = True
        if isinstance(op.request, Deregister):
            self.registered = False
        self.world.after(self.rng.uniform(*self.workload.think), self._next)
