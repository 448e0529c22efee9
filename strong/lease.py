"""Leader-lease arithmetic under bounded clock drift.

Every node's clock runs at a rate within ``[1 - rho, 1 + rho]`` of real time.

A leader that sent heartbeat round ``r`` at its local time ``t`` and got it
acknowledged by a quorum holds a lease until local ``t + D``: in real time at
most ``D / (1 - rho)`` after the send.

An acceptor in the new leader's promise quorum reports ``e``, the local time
elapsed since it last acknowledged any leader (or since it booted, so a
restart forgets nothing that matters). Every old lease quorum intersects the
promise quorum in some acceptor, which acknowledged the old round after it was
sent and before it promised; so the old round was sent at least ``e / (1 + rho)``
real seconds before the promise was received. Hence every old lease has
expired once the new leader's local clock passes::

    receive_time + D * (1 + rho) / (1 - rho) - e

maximised over the quorum. Until then the new leader proposes nothing and
answers no read: the old leader may still be serving lease reads.
"""

from __future__ import annotations


def old_leases_expired_at(
    receive_time: float, since_leader_contact: float, lease_duration: float, max_drift: float
) -> float:
    """Local time after which no lease that this acceptor helped grant can still hold."""
    stretch = (1 + max_drift) / (1 - max_drift)
    return receive_time + lease_duration * stretch - since_leader_contact
