"""One eventual-store node under simulation: the replica core driven like production.

The driver contract, as the asyncio driver obeys it: take ``Ready``, append
its records, fsync (here: a simulated disk latency during which the node
handles nothing, and a crash loses the records), then send its messages,
then answer clients. Inputs that arrive while the node is busy queue up and
are all handled before the next ``Ready`` (group commit).

Peer messages cross the simulated network encoded (``eventual.codec``), so
every run also exercises the wire format; a message that fails to decode is
dropped and counted, never raised.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from configsvc.sim.eventual_storage import EventualSimStorage
from configsvc.sim.world import World
from eventual.codec import MalformedMessage, decode, encode
from eventual.config import ReplicaConfig
from eventual.messages import Event, FullState, Message
from eventual.ready import Ready
from eventual.records import EventRecord
from eventual.replica import Replica
from eventual.requests import Request, Result
from eventual.storage import recover


@dataclass(frozen=True)
class ClientRequest:
    op_id: int
    request: Request
    token: str | None


@dataclass(frozen=True)
class ClientResponse:
    op_id: int
    result: Result


#: called with (origin node, event) once an event created by that node is durable
EventObserver = Callable[[str, Event], None]
#: called with (time, src, dst, message) for every full state sent
FullStateObserver = Callable[[float, str, str, FullState], None]


class SimEventualNode:
    def __init__(
        self,
        world: World,
        config: ReplicaConfig,
        *,
        on_event: EventObserver,
        on_full_state: FullStateObserver | None = None,
        fsync_latency: tuple[float, float] = (0.0005, 0.003),
        tick_interval: float = 0.05,
    ) -> None:
        self.world = world
        self.id = config.node_id
        self.config = config
        self.storage = EventualSimStorage()
        self.on_event = on_event
        self.on_full_state = on_full_state
        self.fsync_latency = fsync_latency
        self.tick_interval = tick_interval
        self.up = False
        self.epoch = 0
        self.restarts = 0
        self.wipes = 0
        self.malformed = 0
        self.identities: list[str] = []
        #: per peer: the longest silence this node ever observed (kept across boots)
        self.longest_silence = dict.fromkeys(config.peers, 0.0)
        world.register(self.id, self._receive)
        self._boot()

    # ------------------------------------------------------------------ lifecycle

    def _boot(self) -> None:
        self.epoch += 1
        self.up = True
        self.world.down.discard(self.id)
        durable = recover(self.storage.load())
        rng = random.Random(self.world.rng.getrandbits(64))
        self.replica = Replica(self.config, durable, self._now(), rng)
        if not self.identities or self.identities[-1] != self.replica.replica:
            self.identities.append(self.replica.replica)
        self.busy = False
        self.inbox: list[tuple[str, Any]] = []
        #: per peer: when a message from it last arrived (since this boot)
        self.heard_at = {p: self.world.now for p in self.config.peers}
        self.next_request = 0
        self.requests: dict[int, tuple[str, int]] = {}
        epoch = self.epoch
        self.world.after(self.tick_interval * self.world.rng.random(), lambda: self._tick(epoch))
        self._process()

    def crash(self) -> None:
        if not self.up:
            return
        for peer in self.heard_at:
            self.longest_silence[peer] = self.silence(peer)
        self.up = False
        self.epoch += 1
        self.world.down.add(self.id)
        self.storage.crash()
        self.inbox = []

    def restart(self, *, wipe: bool = False) -> None:
        if self.up:
            return
        if wipe:
            self.storage.wipe()
            self.wipes += 1
        self.restarts += 1
        self._boot()

    def _now(self) -> float:
        return self.world.local_time(self.id)

    # ------------------------------------------------------------------ inputs

    def silence(self, peer: str) -> float:
        """The longest stretch (real seconds) this node ever went without a message
        from ``peer`` while up: ground truth for "away beyond the horizon"."""
        return max(self.longest_silence[peer], self.world.now - self.heard_at[peer])

    def _receive(self, src: str, message: Any) -> None:
        if not self.up:
            return
        if src in self.heard_at:
            self.longest_silence[src] = self.silence(src)
            self.heard_at[src] = self.world.now
        if self.busy:
            self.inbox.append((src, message))
            return
        self._handle(src, message)
        self._process()

    def _tick(self, epoch: int) -> None:
        if epoch != self.epoch:
            return
        self.world.after(self.tick_interval, lambda: self._tick(epoch))
        if self.busy:
            return
        self.replica.tick(self._now())
        self._process()

    def _handle(self, src: str, message: Any) -> None:
        now = self._now()
        if isinstance(message, ClientRequest):
            self.next_request += 1
            self.requests[self.next_request] = (src, message.op_id)
            self.replica.submit(self.next_request, message.request, message.token, now)
            return
        try:
            msg: Message = decode(message)
        except MalformedMessage:
            self.malformed += 1
            return
        self.replica.step(src, msg, now)

    # ------------------------------------------------------------------ Ready

    def _process(self) -> None:
        assert not self.busy, "a Ready was taken while the previous one was in flight"
        ready = self.replica.ready()
        if ready.empty():
            return
        if not ready.persist:
            self._complete(ready)
            return
        self.storage.append(ready.persist)
        self.busy = True
        epoch = self.epoch
        latency = self.world.rng.uniform(*self.fsync_latency)
        self.world.after(latency, lambda: self._synced(epoch, ready))

    def _synced(self, epoch: int, ready: Ready) -> None:
        if epoch != self.epoch:
            return  # crashed during the fsync: the records were lost with it
        self.storage.sync()
        self.busy = False
        me = self.replica.replica
        for record in ready.persist:
            if isinstance(record, EventRecord) and record.event.dot[0] == me:
                self.on_event(self.id, record.event)
        self._complete(ready)
        while self.inbox and not self.busy and epoch == self.epoch:
            batch, self.inbox = self.inbox, []
            for src, message in batch:
                self._handle(src, message)
            self._process()

    def _complete(self, ready: Ready) -> None:
        for env in ready.messages:
            if isinstance(env.message, FullState) and self.on_full_state is not None:
                self.on_full_state(self.world.now, env.src, env.dst, env.message)
            self.world.send(env.src, env.dst, encode(env.message))
        for reply in ready.replies:
            target = self.requests.pop(reply.request_id, None)
            if target is not None:
                client, op_id = target
                self.world.send(self.id, client, ClientResponse(op_id, reply.result))
