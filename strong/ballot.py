"""Ballots: totally ordered proposal numbers ``(round, node_id)``.

Two different proposers never use the same ballot because the node id is part
of it; a proposer that wants to outbid ballot ``b`` uses ``(b.round + 1, self)``.
"""

from __future__ import annotations

from typing import NamedTuple


class Ballot(NamedTuple):
    round: int
    node_id: str

    def next_for(self, node_id: str) -> Ballot:
        """The smallest ballot owned by ``node_id`` that is greater than this one."""
        return Ballot(self.round + 1, node_id)

    def __str__(self) -> str:
        return f"{self.round}.{self.node_id}"


#: Smaller than every real ballot (node ids are non-empty).
ZERO = Ballot(0, "")
