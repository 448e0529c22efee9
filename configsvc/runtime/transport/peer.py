"""Per-peer state of the transport: the bounded send queue and the connection's stats."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from configsvc.runtime.transport.config import NO_FAULT, Address, PeerStats, TransportConfig

# ---------------------------------------------------------------- per-peer state


@dataclass(slots=True)
class Outgoing:
    frame: bytes
    enqueued_at: float


class SendQueue:
    """Bounded FIFO of encoded frames; full means the oldest frame is dropped."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self._items: deque[Outgoing] = deque()
        self._bytes = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Outgoing) -> int:
        """Append ``item``; returns how many old frames were dropped to make room."""
        dropped = 0
        while self._items and (
            len(self._items) >= self._max_frames or self._bytes + len(item.frame) > self._max_bytes
        ):
            self._bytes -= len(self._items.popleft().frame)
            dropped += 1
        self._items.append(item)
        self._bytes += len(item.frame)
        self._ready.set()
        return dropped

    async def get(self, timeout: float) -> Outgoing | None:
        """The oldest frame, or ``None`` if none arrives within ``timeout``."""
        if not self._items:
            self._ready.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return None
        item = self._items.popleft()
        self._bytes -= len(item.frame)
        return item

    def take(self, max_bytes: int) -> list[Outgoing]:
        """The oldest frames already queued, in order, up to about ``max_bytes``
        (at least one if any): what one write to the socket may carry."""
        taken: list[Outgoing] = []
        size = 0
        while self._items and (not taken or size + len(self._items[0].frame) <= max_bytes):
            item = self._items.popleft()
            self._bytes -= len(item.frame)
            size += len(item.frame)
            taken.append(item)
        return taken


class PeerState:
    def __init__(self, peer_id: str, address: Address, config: TransportConfig) -> None:
        self.id = peer_id
        self.address = address
        self.queue = SendQueue(config.queue_max_frames, config.queue_max_bytes)
        self.stats = PeerStats()
        self.fault = NO_FAULT
        #: set (and replaced) whenever ``fault`` changes, to cut a delay short
        self.fault_changed = asyncio.Event()
        self.dialer: asyncio.Task[None] | None = None
        self.inbound: asyncio.StreamWriter | None = None


