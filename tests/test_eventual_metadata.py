"""Causal metadata per key is bounded by the number of replicas, not by
clients or writes (dotted version vectors with server-side dots).

Many clients write one hot key through every node, blind and
read-modify-write, across partitions. Whatever happens, every sibling
carries exactly one dot, a key's read context and every session token have
at most one entry per replica identity, and so do every event's covers and
deps. A client-id version vector would have grown to one entry per client.
"""

from __future__ import annotations

import random

from configsvc.sim.eventual_net import Net
from eventual.requests import Get, Put, ReadResult, WriteResult
from eventual.token import decode_vv

NODES = ["n1", "n2", "n3", "n4", "n5"]
CLIENTS = 60
WRITES = 600


def test_metadata_per_key_stays_bounded_by_the_number_of_nodes() -> None:
    rng = random.Random(7)
    net = Net(NODES, seed=7)
    tokens: dict[int, str | None] = dict.fromkeys(range(CLIENTS))
    contexts: dict[int, str | None] = dict.fromkeys(range(CLIENTS))
    widest_token = 0
    for i in range(WRITES):
        if i % 100 == 0:
            net.split(rng.sample(NODES, 2), [])  # two nodes cut off from the rest
        if i % 100 == 50:
            net.heal()
        c = rng.randrange(CLIENTS)
        node = rng.choice(NODES)
        if rng.random() < 0.5:
            got = net.call(node, Get("cfg", "hot"), tokens[c])
            if isinstance(got, ReadResult):
                tokens[c], contexts[c] = got.token, got.context
        ctx = contexts[c] if rng.random() < 0.7 else None
        put = net.call(node, Put("cfg", "hot", f"{c}:{i}".encode(), ctx), tokens[c])
        if isinstance(put, WriteResult):
            tokens[c] = put.token
        widest_token = max(widest_token, *(len(decode_vv(t)) for t in tokens.values() if t))
        net.advance(0.01)
    net.heal()
    net.advance(1.0)
    assert net.converged()

    identities = {r.replica for r in net.replicas.values()}
    assert len(identities) == len(NODES) < CLIENTS
    for replica in net.replicas.values():
        sibs = replica.store.siblings(("cfg", "kv", "hot"))
        assert set(replica.store.key_vv(("cfg", "kv", "hot"))) <= identities
        assert len(replica.store.context.vv) <= len(NODES)
        for e in replica.log.events():
            assert len(e.covers) <= len(NODES) and len(e.deps) <= len(NODES)
        assert len(sibs) >= 1  # concurrent blind writes survive as siblings (values, not metadata)
    assert widest_token <= len(NODES)

    # One read-modify-write collapses every sibling: one dot of metadata remains.
    got = net.call("n1", Get("cfg", "hot"))
    assert isinstance(got, ReadResult)
    net.call("n1", Put("cfg", "hot", b"final", got.context), got.token)
    net.advance(1.0)
    for replica in net.replicas.values():
        assert len(replica.store.siblings(("cfg", "kv", "hot"))) == 1
        assert len(replica.log) == 0  # and the log is collected once stable
