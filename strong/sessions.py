"""The client table of the strong state machine: dedup sessions and their expiry.

Rules (``strong.state_machine`` rules 5 and 8 live here):

1. Idempotency. Per ``client_id`` the last ``(seq, result)`` is remembered. The
   same ``seq`` again returns the remembered result without reapplying; a
   lower ``seq`` is ``ErrorResult("stale_sequence")``. (``seq == 0`` never
   reaches this table.)
2. Time is data. ``clock`` is the highest ``now_ms`` of any ``expire`` call
   (the leader's wall time, carried by ``ExpireSessions``); a session's
   ``last_seen`` is the clock when its client last sent a command. Nothing here
   reads a clock, so every replica expires the same sessions.
3. Expiry. ``expire(now_ms, ttl_ms)`` drops the sessions with
   ``clock - last_seen > ttl_ms`` (those from before the first expiry start
   their idle time at it) and keeps their ids as *expired* for one more TTL;
   expired ids older than that are forgotten, so the table stays bounded.
4. A command of an expired id is ``ErrorResult("session_expired")`` and
   applies nothing: a retry after expiry is refused, never applied twice. An id
   never seen (or forgotten) starts a session at whatever ``seq`` it sends.
5. Determinism of iteration: ids are walked only in sorted order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from strong.results import ErrorCode, ErrorResult, Result

__all__ = ["SessionTable"]


@dataclass(frozen=True, slots=True)
class _Session:
    seq: int
    result: Result
    last_seen: int


class SessionTable:
    """Client id -> last (seq, result), the session clock, and recently expired ids."""

    def __init__(self) -> None:
        self.clock = 0
        self._live: dict[str, _Session] = {}
        #: client id -> clock when its session expired (rule 3)
        self._expired: dict[str, int] = {}

    def check(self, client_id: str, seq: int) -> Result | None:
        """The answer without executing (remembered result or an error), or None: execute.

        A remembered answer counts as activity (``last_seen`` moves to the clock).
        """
        session = self._live.get(client_id)
        if session is None:
            if client_id in self._expired:
                return ErrorResult(
                    ErrorCode.SESSION_EXPIRED,
                    f"the session of client {client_id!r} expired (idle past the TTL): seq "
                    f"{seq} was not applied now; if an earlier attempt of it may have applied, "
                    "its outcome is unknown. Continue under a new client id.",
                )
            return None
        if seq == session.seq:
            if session.last_seen != self.clock:
                self._live[client_id] = _Session(seq, session.result, self.clock)
            return session.result
        if seq < session.seq:
            return ErrorResult(
                ErrorCode.STALE_SEQUENCE,
                f"seq {seq} of client {client_id!r} is older than {session.seq}",
            )
        return None

    def remember(self, client_id: str, seq: int, result: Result) -> None:
        self._live[client_id] = _Session(seq, result, self.clock)

    def replace_results(self, keep: Callable[[Result], Result]) -> None:
        """Replace every remembered result ``r`` by ``keep(r)`` (a version's migration;
        walked in sorted order, rule 5); seq and last_seen stay."""
        for client_id in sorted(self._live):
            old = self._live[client_id]
            self._live[client_id] = _Session(old.seq, keep(old.result), old.last_seen)

    def clear(self) -> None:
        """Forget every live session (only the simulator's planted dedup bug calls this)."""
        self._live.clear()

    def expire(self, now_ms: int, ttl_ms: int) -> None:
        """Rule 3: advance the clock to ``now_ms``, expire idle sessions, forget old ids."""
        if self.clock == 0:  # sessions from before the first expiry start their idle time now
            for client_id in sorted(self._live):
                old = self._live[client_id]
                self._live[client_id] = _Session(old.seq, old.result, now_ms)
        self.clock = max(self.clock, now_ms)
        for client_id in sorted(self._expired):
            if self.clock - self._expired[client_id] > ttl_ms:
                del self._expired[client_id]
        for client_id in sorted(self._live):
            if self.clock - self._live[client_id].last_seen > ttl_ms:
                del self._live[client_id]
                self._expired[client_id] = self.clock

    # --- snapshots ----------------------------------------------------------

    def live(self) -> tuple[tuple[str, int, Result, int], ...]:
        """(client_id, seq, result, last_seen), sorted by client id."""
        return tuple(
            (client_id, s.seq, s.result, s.last_seen)
            for client_id in sorted(self._live)
            for s in (self._live[client_id],)
        )

    def expired(self) -> tuple[tuple[str, int], ...]:
        """(client_id, clock at expiry), sorted by client id."""
        return tuple((client_id, self._expired[client_id]) for client_id in sorted(self._expired))

    @classmethod
    def restore(
        cls,
        live: tuple[tuple[str, int, Result, int], ...],
        expired: tuple[tuple[str, int], ...],
        clock: int,
    ) -> SessionTable:
        table = cls()
        table.clock = clock
        for client_id, seq, result, last_seen in live:
            table._live[client_id] = _Session(seq, result, last_seen)
        table._expired = dict(expired)
        return table
