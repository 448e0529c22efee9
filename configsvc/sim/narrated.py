"""``configsvc demo --simulated``: a narrated, simulated run of a 5-node strong group.

It shows, on the deterministic simulator, what the product promises for a
strong namespace: one leader; writes through any node; a partition that cuts
the leader off makes the minority answer honestly ("not leader", never a stale
value) while the majority elects a new leader and keeps serving; after the
heal every replica converges to the same state hash. The real-process demo
replaces this once the node runtime exists.
"""

from __future__ import annotations

from configsvc.sim.strong_node import ClientRequest, ClientResponse, SimStrongNode
from configsvc.sim.world import World
from strong.commands import Command, encode_command
from strong.config import ReplicaConfig
from strong.ops import CreateNamespace, Get, Put
from strong.ready import Role
from strong.results import GetResult

NODES = ["n1", "n2", "n3", "n4", "n5"]


class _Demo:
    def __init__(self) -> None:
        self.world = World(seed=7, nodes=NODES, max_drift=0.01)
        self.nodes = {n: SimStrongNode(self.world, ReplicaConfig(n, tuple(NODES))) for n in NODES}
        self.replies: list[ClientResponse] = []
        self.world.register("demo-client", lambda src, msg: self.replies.append(msg))
        self.seq = 0

    def say(self, text: str) -> None:
        print(f"[t={self.world.now:6.3f}s] {text}")

    def leader(self) -> str | None:
        up = [n for n in NODES if self.nodes[n].up and self.nodes[n].replica.role is Role.LEADER]
        return up[0] if len(up) == 1 else None

    def wait(self, what: str, cond: object, within: float = 5.0) -> None:
        if not self.world.run_until(self.world.now + within, stop=cond):  # type: ignore[arg-type]
            raise SystemExit(f"demo: gave up waiting for {what}")

    def request(self, node: str, op: object, read: bool = False) -> ClientResponse:
        self.replies.clear()
        if read:
            req = ClientRequest(self.seq + 10_000, "demo", 0, read=op)  # type: ignore[arg-type]
        else:
            self.seq += 1
            data = encode_command(Command("demo", self.seq, op))  # type: ignore[arg-type]
            req = ClientRequest(self.seq, "demo", self.seq, write=data)
        self.world.send("demo-client", node, req)
        self.wait("a reply", lambda: bool(self.replies), within=2.0)
        return self.replies[0]

    def run(self) -> int:
        self.say("5 replicas boot; nobody leads yet")
        self.wait("a leader", lambda: self.leader() is not None)
        first = self.leader()
        assert first is not None
        self.say(f"{first} won phase 1 and leads (quorum 3 of 5, tolerates 2 failures)")
        self.request(first, CreateNamespace("flags", "strong", ()))
        self.request(first, Put("flags", b"rollout", b"10%"))
        self.say("wrote flags/rollout = 10% through the leader; chosen by a quorum, then applied")
        self.world.isolate(first)
        self.say(f"partition: {first} is cut off from the other four")
        answer = self.request(first, Get("flags", b"rollout"), read=True)
        self.say(f"a read at {first} right away is still served from its lease: "
                 f"{_value(answer)!r} (no successor can start before the lease expires)")
        self.wait("a new leader", lambda: self.leader() not in (None, first))
        second = self.leader()
        assert second is not None
        self.say(f"the majority elected {second}; {first} stepped down (no quorum contact)")
        self.request(second, Put("flags", b"rollout", b"50%"))
        self.say(f"wrote flags/rollout = 50% through {second}")
        minority = self.request(first, Put("flags", b"rollout", b"0%"))
        self.say(f"a write at the cut-off {first} is refused: {minority.status} "
                 f"(leader hint: {minority.leader_hint}) — safe to retry elsewhere")
        self.world.heal()
        self.say("the partition heals")
        self.wait("convergence", lambda: len({n.sm.state_hash() for n in self.nodes.values()}) == 1)
        value = _value(self.request(second, Get("flags", b"rollout"), read=True))
        digest = self.nodes[first].sm.state_hash()[:16]
        self.say(f"every replica converged: state hash {digest}…, flags/rollout = {value!r}")
        print("\nNext: `configsvc sim strong --seeds 100` runs the fault-injecting simulator.")
        return 0


def _value(response: ClientResponse) -> bytes | None:
    result = response.result
    return result.kv.value if isinstance(result, GetResult) and result.kv else None


def main() -> int:
    return _Demo().run()
