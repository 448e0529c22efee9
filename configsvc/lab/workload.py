"""The lab's clients: pinned to one node each, recording every request in the history.

Per node, one client per namespace kind (``NAMESPACES``):

- ``strong`` (``flags``): linearizable gets and puts of a few shared keys;
- ``eventual`` (``config``, multi-value) and ``lww`` (``config-lww``): a
  session (it sends back its causal token) that reads a shared key and, half
  of the time, writes it with the read's context (read-modify-write: the
  write supersedes exactly what was read; a key read absent is written
  ``?blind=true``, superseding nothing);
- ``svc-strong`` / ``svc-eventual`` (``services-strong`` / ``services``): an
  instance ``web/i-<node>`` registered with a TTL and heartbeating through
  its node, and a reader listing the passing instances of ``web``;
- one prober reading every node's causal token (what its eventual store has
  seen), from which convergence after a heal is measured.

Invariants: a client never fails over (its node is its side of the
partition) and never retries (each request is one op, its outcome as seen);
every put writes a value no other put writes, so a read names the write it
saw; a client's ops never overlap. Pacing between requests is the workload's
rate, not a wait for anything.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from configsvc.lab.history import History, Op, Outcome
from eventual.token import decode_vv, encode_vv

__all__ = ["KEYS", "NAMESPACES", "SERVICE", "Workload", "WorkloadConfig"]

#: kind -> (namespace, consistency, merge)
NAMESPACES: dict[str, tuple[str, str, str]] = {
    "strong": ("flags", "strong", "mvr"),
    "eventual": ("config", "eventual", "mvr"),
    "lww": ("config-lww", "eventual", "lww"),
    "svc-strong": ("services-strong", "strong", "mvr"),
    "svc-eventual": ("services", "eventual", "mvr"),
}
KEYS = ["rollout", "limit", "region"]
SERVICE = "web"
TOKEN = "X-Configsvc-Token"
CONTEXT = "X-Configsvc-Context"


def namespace_specs() -> list[dict[str, str]]:
    """The cluster file's ``namespaces`` for a lab cluster."""
    return [{"name": name, "consistency": c} | ({"merge": m} if c == "eventual" else {})
            for name, c, m in NAMESPACES.values()]


@dataclass(frozen=True)
class WorkloadConfig:
    #: seconds between a client's requests (on average; jittered +-50%)
    kv_period: float = 0.15
    #: an instance's TTL; it heartbeats every ttl/4
    ttl: float = 2.0
    read_period: float = 0.4
    probe_period: float = 0.25
    #: how long a client waits for an answer before calling the outcome unknown
    timeout: float = 3.0
    seed: int = 1


class Workload:
    """Every client of a run, on one asyncio loop in a thread of its own."""

    def __init__(self, urls: Mapping[str, str], history: History,
                 config: WorkloadConfig | None = None) -> None:
        self.urls = dict(urls)
        self.history = history
        self.config = config or WorkloadConfig()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lab-workload", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=self.config.timeout + 10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=self.config.timeout, limits=limits) as http:
            tasks = []
            for i, node in enumerate(self.urls):
                rng = random.Random(self.config.seed * 1000 + i)
                for kind in ("strong",):
                    tasks.append(self._loop_of(self._strong_kv, http, node, kind, rng))
                for kind in ("eventual", "lww"):
                    tasks.append(self._loop_of(self._session_kv, http, node, kind, rng))
                for kind in ("svc-strong", "svc-eventual"):
                    tasks.append(self._heartbeater(http, node, kind, i))
                    tasks.append(self._loop_of(self._reader, http, node, kind, rng))
            tasks.append(self._prober(http))
            self._ready.set()
            await asyncio.gather(*tasks)

    def _stopped(self) -> bool:
        assert self._stop is not None
        return self._stop.is_set()

    async def _pause(self, period: float, rng: random.Random | None = None) -> None:
        """The workload's rate (not a wait for a condition); ends early on stop."""
        assert self._stop is not None
        delay = period * (rng.uniform(0.5, 1.5) if rng else 1.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)

    async def _loop_of(self, step: Callable[[_Client, random.Random], Awaitable[None]],
                       http: httpx.AsyncClient, node: str, kind: str, rng: random.Random) -> None:
        client = _Client(f"{kind}@{node}", node, kind, self.urls[node], http, self.history)
        while not self._stopped():
            try:
                await step(client, rng)
            except (ValueError, KeyError, TypeError) as exc:  # an answer not as documented
                self.history.event("client-error", client=client.name, error=repr(exc)[:200])
            reader = kind in ("svc-strong", "svc-eventual")
            await self._pause(self.config.read_period if reader else self.config.kv_period, rng)

    # ------------------------------------------------------------------ clients

    async def _strong_kv(self, c: _Client, rng: random.Random) -> None:
        key = rng.choice(KEYS)
        if rng.random() < 0.5:
            op, resp = await c.call("GET", f"/v1/kv/{c.ns}/{key}", "get", key)
            if op.outcome == "ok" and resp is not None and resp.status_code == 200:
                op.answer = base64.b64decode(resp.json()["kv"]["value"]).decode()
        else:
            value = c.next_value()
            op, resp = await c.call("PUT", f"/v1/kv/{c.ns}/{key}", "put", key, value=value,
                                    content=value.encode())
            if op.outcome == "ok" and resp is not None:
                op.answer = resp.json().get("revision")
        self.history.add(op)

    async def _session_kv(self, c: _Client, rng: random.Random) -> None:
        key = rng.choice(KEYS)
        read, resp = await c.call("GET", f"/v1/kv/{c.ns}/{key}", "get", key, session=True)
        context: str | None = None
        if read.outcome == "ok" and resp is not None:
            if resp.status_code == 200:
                body = resp.json()
                read.answer = {
                    "siblings": [[base64.b64decode(s["value"]).decode(), s["dot"][0], s["dot"][1]]
                                 for s in body["siblings"]],
                    "context": decode_vv(resp.headers.get(CONTEXT)),
                }
                context = resp.headers.get(CONTEXT)
            else:
                read.answer = {"siblings": [], "context": {}}
                context = ""
        self.history.add(read)
        if context is None or rng.random() < 0.5:
            return
        value = c.next_value()
        headers, params = ({CONTEXT: context}, None) if context else ({}, {"blind": "true"})
        write, resp = await c.call("PUT", f"/v1/kv/{c.ns}/{key}", "put", key, value=value,
                                   session=True, content=value.encode(), headers=headers,
                                   params=params)
        write.sent_context = decode_vv(context) if context else {}
        if write.outcome == "ok" and resp is not None:
            write.answer = resp.json()["dot"]
        self.history.add(write)

    async def _heartbeater(self, http: httpx.AsyncClient, node: str, kind: str, index: int) -> None:
        c = _Client(f"{kind}-hb@{node}", node, kind, self.urls[node], http, self.history)
        path = f"/v1/services/{c.ns}/{SERVICE}/i-{node}"
        registered = False
        while not self._stopped():
            if not registered:
                body = {"port": 8000 + index, "ttl": self.config.ttl, "status": "passing"}
                op, _ = await c.call("PUT", path, "register", f"i-{node}",
                                     session=kind == "svc-eventual", json=body)
            else:
                op, _ = await c.call("PUT", path + "/heartbeat", "heartbeat", f"i-{node}",
                                     session=kind == "svc-eventual", json={})
            self.history.add(op)
            if op.outcome == "ok":
                registered = True
            elif op.status == 404:
                registered = False  # unknown here (e.g. a restarted store): register again
            await self._pause(self.config.ttl / 4)

    async def _reader(self, c: _Client, rng: random.Random) -> None:
        op, resp = await c.call("GET", f"/v1/services/{c.ns}/{SERVICE}", "instances", SERVICE,
                                session=c.kind == "svc-eventual", params={"passing": "true"})
        if op.outcome == "ok" and resp is not None:
            op.answer = sorted(i["instance_id"] for i in resp.json()["instances"])
        self.history.add(op)

    async def _prober(self, http: httpx.AsyncClient) -> None:
        """Every node's causal token, a few times a second (convergence)."""
        probes = {n: _Client(f"probe@{n}", n, "probe", url, http, self.history)
                  for n, url in self.urls.items()}
        ns = NAMESPACES["eventual"][0]
        while not self._stopped():
            ops = await asyncio.gather(*(
                p.call("GET", f"/v1/kv/{ns}", "probe", "", params={"prefix": "\x7fnone"})
                for p in probes.values()))
            for op, _ in ops:
                self.history.add(op)
            await self._pause(self.config.probe_period)


class _Client:
    """One pinned client: requests to its node only, each recorded as an ``Op``."""

    def __init__(self, name: str, node: str, kind: str, url: str, http: httpx.AsyncClient,
                 history: History) -> None:
        self.name, self.node, self.kind, self.url = name, node, kind, url
        self.ns = NAMESPACES[kind][0] if kind in NAMESPACES else NAMESPACES["eventual"][0]
        self.http = http
        self.history = history
        self.token: dict[str, int] = {}
        self._seq = 0

    def next_value(self) -> str:
        self._seq += 1
        return f"{self.node}.{self.kind}.{self._seq}"

    async def call(self, method: str, path: str, op: str, key: str, *, value: str | None = None,
                   session: bool = False, headers: dict[str, str] | None = None,
                   **kw: Any) -> tuple[Op, httpx.Response | None]:
        """Send one request; the op (not yet added: the caller fills ``answer``) and
        the response (None if none came)."""
        sent = dict(headers or {})
        if session and self.token:
            sent[TOKEN] = encode_vv(self.token)
        start = self.history.now()
        resp: httpx.Response | None = None
        error: str | None = None
        outcome: Outcome
        try:
            resp = await self.http.request(method, self.url + path, headers=sent, **kw)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            outcome, error = "failed", f"not sent: {type(exc).__name__}"  # nothing left
        except httpx.TransportError as exc:
            outcome, error = "unknown", f"no answer: {type(exc).__name__}"
        end = self.history.now()
        status = None if resp is None else resp.status_code
        if resp is not None:
            outcome, error = _outcome(method, resp)
            token = resp.headers.get(TOKEN)
            if token:
                seen = decode_vv(token)
                if session:
                    self.token = {r: max(self.token.get(r, 0), seen.get(r, 0))
                                  for r in self.token.keys() | seen.keys()}
        record = Op(client=self.name, node=self.node, ns=self.ns, kind=self.kind, op=op, key=key,
                    start=round(start, 4), end=round(end, 4), outcome=outcome, value=value,
                    status=status, error=error)
        if resp is not None and resp.headers.get(TOKEN):
            record.token = decode_vv(resp.headers[TOKEN])
        return record, resp


def _outcome(method: str, resp: httpx.Response) -> tuple[Outcome, str | None]:
    if resp.status_code < 300:
        return "ok", None
    try:
        code = str(resp.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        code = resp.text[:80]
    if resp.status_code == 404 and method == "GET" and code == "key_not_found":
        return "ok", None  # a read of a key that does not exist (yet)
    if resp.status_code == 504:
        return "unknown", code
    return "failed", code
