"""The output batch of an eventual replica: what the driver must do, in order.

Driver contract (etcd-raft's): append ``persist`` to storage and sync it;
then send ``messages``; then deliver ``replies`` to clients. A reply may
acknowledge a write whose record is in ``persist``: syncing first is what
makes "acknowledged" mean "durable". Messages may carry a version vector
that includes events in ``persist``: syncing first keeps peers from
counting on events this replica could still lose (garbage collection
relies on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eventual.messages import Envelope
from eventual.records import Record
from eventual.requests import Reply

__all__ = ["Ready"]


@dataclass
class Ready:
    persist: list[Record] = field(default_factory=list)
    messages: list[Envelope] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.persist or self.messages or self.replies)
