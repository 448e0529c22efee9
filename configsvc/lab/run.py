"""``configsvc lab run``: one measured run of a scenario on a local cluster.

The order of a run, and why:

1. start N real node processes (``Supervisor``) with the lab's namespaces
   and wait until a leader has created them;
2. start the pinned clients (``workload``), then run the scenario's three
   phases (``scenarios``): every op is recorded with its outcome;
3. stop the clients, heal everything, and wait (with a deadline) until the
   eventual namespaces answer alike on every node; then read every key on
   every node (``finals``, for the lost-write check) and every strong key
   through the leader (``audit``, joining the linearizability history);
4. measure, check, and report (``measure``, ``verdicts``, ``report``).

Invariants: the cluster is stopped whatever happens (no node process
outlives a run); a planted fault is switched on only through ``plant``, in
the node processes' environment, never by default; bad arguments raise
``LabError`` before any process starts.
"""

from __future__ import annotations

import base64
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from configsvc.lab.history import History, Op
from configsvc.lab.measure import measure
from configsvc.lab.scenarios import SCENARIOS, Timeline, phases_for
from configsvc.lab.supervisor import Supervisor
from configsvc.lab.verdicts import Verdicts, check_all
from configsvc.lab.workload import KEYS, NAMESPACES, Workload, WorkloadConfig, namespace_specs
from configsvc.localcluster import wait_for
from eventual.token import decode_vv

__all__ = ["PLANTS", "LabError", "LabResult", "run_lab"]

#: planted faults a run may switch on -> the node's name for it ($CONFIGSVC_PLANTED_BUGS)
PLANTS = {"stale-follower-reads": "stale_follower_reads"}
PLANTED_ENV = "CONFIGSVC_PLANTED_BUGS"
MAX_NODES = 9
MAX_DURATION = 3600.0


class LabError(ValueError):
    """A lab run asked for something that cannot be run (the message says what)."""


@dataclass
class LabResult:
    scenario: str
    nodes: int
    timeline: Timeline
    figures: dict[str, Any]
    verdicts: Verdicts
    history: History
    plant: list[str] = field(default_factory=list)
    finals: list[Op] = field(default_factory=list)
    #: how the network was cut: "transport" (the nodes' fault API) or "netns" (nftables)
    cuts: str = "transport"

    def summary(self) -> dict[str, Any]:
        """``summary.json``: every figure and verdict, machine-readable."""
        t = self.timeline
        return {
            "scenario": self.scenario,
            "nodes": self.nodes,
            "planted": self.plant,
            "cuts": self.cuts,
            "description": t.description,
            "leader_at_fault": t.leader,
            "sides": t.sides,
            "phases": {"fault_at": round(t.fault_at, 3), "heal_at": round(t.heal_at, 3),
                       "end_at": round(t.end_at, 3)},
            "fault_windows": [[round(a, 3), round(b, 3)] for a, b in t.windows],
            "transition_windows": [[round(a, 3), round(b, 3)] for a, b in t.transitions],
            "namespaces": {k: v for k, v in self.figures.items() if k != "convergence"},
            "convergence": self.figures.get("convergence", {}),
            "violations": self.verdicts.violations,
            "counted": self.verdicts.counted,
            "counted_by_phase": self.verdicts.counted_by_phase,
            "inconclusive": self.verdicts.inconclusive,
            "examples": self.verdicts.examples,
            "ops": len(self.history.ops),
        }


class LabCluster:
    """The scenario's ``Controls`` over a ``Supervisor``, recording each act."""

    def __init__(self, supervisor: Supervisor, history: History) -> None:
        self.sup = supervisor
        self.history = history
        self.ids = list(supervisor.ids)

    def leader(self) -> str:
        leader: str = wait_for(self.sup.cluster.leader, 30, "a leader")
        return leader

    def partition(self, *groups: list[str]) -> None:
        self.sup.partition(*groups)
        self.history.event("partition", groups=[list(g) for g in groups])

    def isolate(self, nid: str) -> None:
        self.sup.isolate(nid)
        self.history.event("isolate", node=nid)

    def heal(self) -> None:
        self.sup.heal()
        self.history.event("heal-network")

    def kill(self, nid: str) -> None:
        self.sup.kill(nid)
        self.history.event("kill", node=nid, signal="SIGKILL")

    def restart(self, nid: str) -> None:
        self.sup.restart(nid)
        self.history.event("restart", node=nid)


def validate(scenario: str, nodes: int, duration: float, plant: list[str]) -> None:
    """Raise ``LabError`` naming what is wrong with the arguments."""
    if scenario not in SCENARIOS:
        raise LabError(f"unknown scenario {scenario!r}; scenarios: {', '.join(SCENARIOS)}")
    if not SCENARIOS[scenario].min_nodes <= nodes <= MAX_NODES:
        raise LabError(f"--nodes must be between {SCENARIOS[scenario].min_nodes} and {MAX_NODES} "
                       f"for {scenario}, got {nodes}")
    if not math.isfinite(duration) or duration > MAX_DURATION:
        raise LabError(f"--duration must be a number of seconds from 10 to {MAX_DURATION:g}")
    try:
        phases_for(duration)
    except ValueError as exc:
        raise LabError(str(exc)) from None
    for p in plant:
        if p not in PLANTS:
            raise LabError(f"unknown planted fault {p!r}; planted faults: {', '.join(PLANTS)}")


def run_lab(scenario: str, nodes: int = 5, duration: float = 60.0, plant: list[str] | None = None,
            seed: int = 1, root: Path | None = None, progress: Any = None,
            netns: bool = False) -> LabResult:
    """Run ``scenario`` and return what was measured. ``progress``: a callable
    taking one line of text (what the run is doing), or None. ``netns``: every
    node in its own network namespace, cuts as nftables rules (real packets
    dropped; root only) instead of cuts in the nodes' transports.

    Raises ``LabError`` for bad arguments, ``configsvc.lab.netns.NetnsError``
    when ``netns`` is not possible here, ``TimeoutError`` when the cluster
    does not come up or settle within its deadline."""
    plant = list(plant or [])
    validate(scenario, nodes, duration, plant)
    say = progress or (lambda _text: None)
    env = {PLANTED_ENV: ",".join(PLANTS[p] for p in plant)} if plant else {}
    with tempfile.TemporaryDirectory(prefix="configsvc-lab-") as tmp:
        sup = Supervisor(root or Path(tmp), nodes, namespaces=namespace_specs(),
                         timing={"request_timeout": 2.0}, env=env, netns=netns)
        try:
            say(f"starting {nodes} node processes"
                + (", each in its own network namespace (cuts: nftables)" if netns else "")
                + (f" with planted {', '.join(plant)}" if plant else ""))
            sup.start_all()
            dashboard = _dashboard(sup)
            if dashboard:
                say(f"dashboard: {dashboard} (live while the run lasts)")
            result = _run(sup, scenario, nodes, duration, plant, seed, say)
            result.cuts = "netns" if netns else "transport"
            return result
        finally:
            sup.stop_all()


def _dashboard(sup: Supervisor) -> str | None:
    """The first node's dashboard address, if this build serves one."""
    url = sup.cluster.url(sup.ids[0]) + "/ui"
    try:
        return url if httpx.get(url, timeout=2.0).status_code == 200 else None
    except httpx.HTTPError:
        return None


def _run(sup: Supervisor, scenario: str, nodes: int, duration: float, plant: list[str],
         seed: int, say: Any) -> LabResult:
    history = History()
    config = WorkloadConfig(seed=seed)
    workload = Workload({n: sup.cluster.url(n) for n in sup.ids}, history, config)
    phases = phases_for(duration)
    say(f"running {scenario}: {phases.before:g}s before, {phases.during:g}s during, "
        f"{phases.after:g}s after the heal")
    workload.start()
    try:
        timeline = SCENARIOS[scenario].run(LabCluster(sup, history), phases, history)
    finally:
        workload.stop()
    say(f"fault: {timeline.description}; {len(history.ops)} ops recorded; settling")
    sup.heal()
    finals = _finals(sup, history)
    audit = _audit(sup, history)
    figures = measure(history.snapshot(), timeline, config.ttl)
    verdicts = check_all(history.snapshot(), finals, audit, phase_of=timeline.phase)
    return LabResult(scenario, nodes, timeline, figures, verdicts, history, plant, finals)


def _finals(sup: Supervisor, history: History) -> list[Op]:
    """Once every node answers each eventual namespace alike: each key on every node."""
    http = httpx.Client(timeout=5.0)
    ids = [n for n in sup.ids if sup.cluster.alive(n)]
    kinds = ("eventual", "lww")

    def listing(node: str, ns: str) -> Any:
        return http.get(f"{sup.cluster.url(node)}/v1/kv/{ns}").json()["items"]

    def alike() -> bool:
        return all(len({repr(listing(n, NAMESPACES[k][0])) for n in ids}) == 1 for k in kinds)

    try:
        wait_for(alike, 60, "the eventual namespaces to converge after the heal")
        finals = []
        for kind in kinds:
            ns = NAMESPACES[kind][0]
            for node in ids:
                for key in KEYS:
                    start = history.now()
                    resp = http.get(f"{sup.cluster.url(node)}/v1/kv/{ns}/{key}")
                    answer: dict[str, Any] = {"siblings": [], "context": {}}
                    if resp.status_code == 200:
                        answer = {"siblings": [[base64.b64decode(s["value"]).decode(), *s["dot"]]
                                               for s in resp.json()["siblings"]],
                                  "context": decode_vv(resp.headers.get("X-Configsvc-Context"))}
                    finals.append(Op(f"final@{node}", node, ns, kind, "get", key, start,
                                     history.now(), "ok", status=resp.status_code, answer=answer))
        return finals
    finally:
        http.close()


def _audit(sup: Supervisor, history: History) -> list[Op]:
    """Each strong key read linearizably after the heal (joins the checked history)."""
    http = httpx.Client(timeout=5.0)
    ns = NAMESPACES["strong"][0]
    audit: list[Op] = []
    try:
        leader = wait_for(sup.cluster.leader, 30, "a leader after the heal")
        for key in KEYS:
            def read(key: str = key) -> Op | None:
                start = history.now()
                resp = http.get(f"{sup.cluster.url(leader)}/v1/kv/{ns}/{key}")
                if resp.status_code not in (200, 404):
                    return None
                value = (base64.b64decode(resp.json()["kv"]["value"]).decode()
                         if resp.status_code == 200 else None)
                return Op("audit", leader, ns, "strong", "get", key, start, history.now(), "ok",
                          status=resp.status_code, answer=value)
            audit.append(wait_for(read, 30, f"an audit read of {key!r}"))
        return audit
    finally:
        http.close()
