"""The live dashboard at ``/ui``: what this cluster looks like from this node.

    GET  /ui                        the page (``ui_static/``: plain HTML, JS, CSS; works offline)
    GET  /ui/static/{file}          its assets
    GET  /ui/api/state              members and roles, namespaces, health, the current cut
    GET  /ui/control/status         the cluster supervisor's view (lab and local clusters)
    POST /ui/control/kill/{node}    {"signal": "KILL"|"TERM"|"INT"|"STOP"|"CONT"} (optional)
    POST /ui/control/restart/{node}
    POST /ui/control/isolate/{node}
    POST /ui/control/partition      {"groups": [["n1", "n2"], ["n3", "n4", "n5"]]}
    POST /ui/control/one-way        {"from": ["n1"], "to": ["n2", "n3"]}
    POST /ui/control/heal

The page itself runs the probe workload (a write and a read per namespace,
keys under ``_ui-probe/``, through this node's API) and keeps the rolling
success rates in the browser: the server side only describes the cluster.

Controls exist only where a cluster supervisor runs a control server
(``configsvc cluster up``, the lab) and told this node its address in
``$CONFIGSVC_CONTROL_URL``; ``/ui/control/...`` proxies to it, so the browser
stays on one origin. Without it those routes answer ``404 control_unavailable``
and the page hides the buttons. Control POSTs must be ``application/json``:
a cross-site form cannot send that without a CORS preflight, which this
node never grants, so another page cannot kill nodes through a browser.

Rules: every input is checked before anything is forwarded (bad input is a
clear 4xx, never a 500); a member or control server that does not answer is
reported as such, within a short timeout, and never fails the whole answer.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from configsvc.http.cluster_view import known_nodes
from configsvc.http.errors import ApiError, bad_request, json_object
from configsvc.http.node_requests import read_body
from configsvc.http.strong_api import ns_json
from configsvc.lab.cuts import describe
from configsvc.member_addresses import member_address
from configsvc.security import api_scheme, api_verify

if TYPE_CHECKING:
    from configsvc.node import Node

__all__ = ["CONTROL_URL_ENV", "PROBE_PREFIX", "ui_routes"]

CONTROL_URL_ENV = "CONFIGSVC_CONTROL_URL"
#: keys the page's probe writes (one per node and namespace, overwritten)
PROBE_PREFIX = "_ui-probe/"
STATIC = Path(__file__).parent / "ui_static"
_ASSET = re.compile(r"[a-z0-9_-]{1,64}\.(js|css|svg)")
_MEDIA = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
#: how long a member's health or faults may take before it counts as unreachable
MEMBER_TIMEOUT = 0.8
#: the supervisor's status asks every node for its health: give it longer
STATUS_TIMEOUT = 1.5
#: restart waits until the node answers: give the control server time
CONTROL_TIMEOUT = 40.0
#: the signals the control server sends (STOP pauses a node: hung, not dead; CONT resumes it)
_SIGNALS = ("KILL", "TERM", "INT", "STOP", "CONT")

Link = tuple[str, str]


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


class Dashboard:
    def __init__(self, node: Node, control_url: str | None) -> None:
        self.node = node
        self.control_url = control_url.rstrip("/") if control_url else None
        self.scheme = api_scheme(node.config)
        #: how the member view verifies the other nodes' API certificates
        self.verify = api_verify(node.config, node.id)

    @property
    def members(self) -> list[str]:
        """The nodes shown: the configuration's members and the cluster file's
        nodes, minus removed ones (``configsvc.http.cluster_view.known_nodes``)."""
        if not self.node.started:
            return [n.id for n in self.node.config.nodes]
        retired = self.node.strong.members.retired
        return [n for n in known_nodes(self.node) if n not in retired]

    def api(self, nid: str) -> str:
        """``nid``'s API base URL (from the configuration or the cluster file)."""
        member = member_address(self.node, nid) if self.node.started else None
        if member is None or not member.api_address:
            n = self.node.config.node(nid)
            return f"{self.scheme}://{_connect_host(n.host)}:{n.api_port}"
        host, _, port = member.api_address.rpartition(":")
        return f"{self.scheme}://{_connect_host(host)}:{port}"

    # ------------------------------------------------------------------ the page

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        match = _ASSET.fullmatch(name)
        path = STATIC / name
        if match is None or not path.is_file():
            raise ApiError(404, "not_found", f"no dashboard asset {name!r}")
        return FileResponse(path, media_type=_MEDIA[match.group(1)])

    # ------------------------------------------------------------------ state

    async def state(self, request: Request) -> Response:
        node = self.node
        me = node.health()
        shown = self.members
        async with httpx.AsyncClient(timeout=MEMBER_TIMEOUT, verify=self.verify) as http:
            control, healths = await asyncio.gather(
                self._control_status(http),
                asyncio.gather(*(self._health(http, nid, me) for nid in shown)),
            )
            partition = await self._partition(http, control)
        up = control["nodes"] if control and isinstance(control.get("nodes"), dict) else {}
        reachable = set(me.get("strong", {}).get("reachable_voters", [node.id]))
        members = [self._member(nid, health, up.get(nid), nid in reachable)
                   for nid, health in zip(shown, healths, strict=True)]
        namespaces = [] if node.corrupt else [ns_json(i) for i in node.strong.sm.namespaces()]
        return JSONResponse({
            "node": node.id,
            "health": me,
            "members": members,
            "namespaces": namespaces,
            "partition": partition,
            "control": {"available": self.control_url is not None,
                        "reachable": control is not None},
            "probe_prefix": PROBE_PREFIX,
        })

    def _member(self, nid: str, health: dict[str, Any] | None, sup: Any, reachable: bool) -> dict[str, Any]:
        """One member as the page shows it; ``sup``: the supervisor's entry, if any."""
        entry: dict[str, Any] = {"id": nid, "api": self.api(nid), "self": nid == self.node.id,
                                 "reachable_from_here": reachable, "up": None, "exit": None}
        if isinstance(sup, dict):
            entry["up"], entry["exit"] = sup.get("up"), sup.get("exit")
        if health is None or "strong" not in health:
            entry["role"] = "down" if entry["up"] is False else "unreachable"
            entry["status"] = health.get("status", "unavailable") if health else "unreachable"
            entry["leader"] = None
            entry["failures_to_outage"] = None
            return entry
        strong = health["strong"]
        entry["role"] = strong.get("role")
        entry["status"] = health.get("status")
        entry["leader"] = strong.get("leader")
        entry["failures_to_outage"] = strong.get("failures_to_outage")
        return entry

    async def _health(self, http: httpx.AsyncClient, nid: str, me: dict[str, Any]) -> dict[str, Any] | None:
        if nid == self.node.id:
            return me
        try:
            response = await http.get(self.api(nid) + "/v1/cluster/health")
            data = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    async def _partition(self, http: httpx.AsyncClient, control: dict[str, Any] | None) -> dict[str, Any]:
        """The cut now: the supervisor's when it answers (it knows netns cuts too), else
        what the members' transports drop (their admin fault lists)."""
        if control is not None and isinstance(control.get("cut"), list):
            links = {(str(a), str(b)) for a, b in _pairs(control["cut"])}
            return self._cut("control", links, complete=True)
        links = set()
        for peer, fault in self._own_faults().items():
            if fault["drop_out"]:
                links.add((self.node.id, peer))
            if fault["drop_in"]:
                links.add((peer, self.node.id))
        token = self.node.config.security.admin_token
        if token is None:
            return self._cut("this node's transport", links, complete=False)
        others = [n for n in self.members if n != self.node.id]
        answers = await asyncio.gather(*(self._faults(http, nid, token) for nid in others))
        complete = True
        for nid, faults in zip(others, answers, strict=True):
            if faults is None:
                complete = False
                continue
            for peer, fault in faults.items():
                if isinstance(fault, dict) and fault.get("drop_out"):
                    links.add((nid, peer))
                if isinstance(fault, dict) and fault.get("drop_in"):
                    links.add((peer, nid))
        return self._cut("the nodes' transports", links, complete=complete)

    def _cut(self, source: str, links: set[Link], complete: bool) -> dict[str, Any]:
        known = [(a, b) for a, b in links if a in self.members and b in self.members]
        return {"source": source, "complete": complete,
                "cut": sorted([a, b] for a, b in known),
                "text": describe(self.members, set(known))}

    def _own_faults(self) -> dict[str, dict[str, Any]]:
        transport = self.node.transport
        if transport is None:
            return {}
        return {p: {"drop_out": f.drop_out, "drop_in": f.drop_in} for p, f in transport.faults().items()}

    async def _faults(self, http: httpx.AsyncClient, nid: str, token: str) -> dict[str, Any] | None:
        try:
            response = await http.get(self.api(nid) + "/v1/admin/faults",
                                      headers={"Authorization": f"Bearer {token}"})
            faults = response.json().get("faults") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return faults if isinstance(faults, dict) else None

    async def _control_status(self, http: httpx.AsyncClient) -> dict[str, Any] | None:
        if self.control_url is None:
            return None
        try:
            response = await http.get(self.control_url + "/status", timeout=STATUS_TIMEOUT)
            data = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    # ------------------------------------------------------------------ controls

    async def control_status(self, request: Request) -> Response:
        return await self._forward("GET", "/status", None, timeout=STATUS_TIMEOUT * 2)

    async def control(self, request: Request) -> Response:
        """Check one control action and forward it to the supervisor's control server."""
        action = request.path_params["action"]
        target = request.path_params.get("node")
        body = await self._json_body(request)
        if action in ("kill", "restart", "isolate"):
            if target is None:
                raise ApiError(404, "not_found", f"{action} needs a node: /ui/control/{action}/{{node}}")
            self._known(target)
            if action == "kill" and body:
                signal = body.get("signal", "KILL")
                if signal not in _SIGNALS or set(body) - {"signal"}:
                    raise bad_request(f"kill takes {{'signal': one of {', '.join(_SIGNALS)}}}")
                return await self._forward("POST", f"/kill/{target}", {"signal": signal})
            return await self._forward("POST", f"/{action}/{target}", None)
        if target is not None:
            raise ApiError(404, "not_found", f"{action} takes no node in the path")
        if action == "heal":
            return await self._forward("POST", "/heal", None)
        if action == "partition":
            groups = body.get("groups")
            if not isinstance(groups, list) or not groups or set(body) - {"groups"}:
                raise bad_request("partition takes {'groups': [[node, ...], ...]}")
            return await self._forward("POST", "/partition", {"groups": [self._nodes(g) for g in groups]})
        if action == "one-way":
            if set(body) != {"from", "to"}:
                raise bad_request("one-way takes {'from': [node, ...], 'to': [node, ...]}")
            return await self._forward("POST", "/one-way",
                                       {"from": self._nodes(body["from"]), "to": self._nodes(body["to"])})
        raise ApiError(404, "not_found", f"no control action {action!r}")

    async def _json_body(self, request: Request) -> dict[str, Any]:
        if self.control_url is None:
            raise ApiError(404, "control_unavailable",
                           "controls exist only on local and lab clusters (no control server here)")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise ApiError(415, "unsupported_media_type", "control requests must be application/json")
        return json_object(await read_body(request, 4096, "body_too_large"))

    def _known(self, nid: object) -> str:
        if not isinstance(nid, str) or nid not in self.members:
            raise ApiError(404, "node_not_found", f"{nid!r} is not a member ({', '.join(self.members)})")
        return nid

    def _nodes(self, group: object) -> list[str]:
        if not isinstance(group, list) or not group:
            raise bad_request("a group is a non-empty list of node ids")
        unknown = [n for n in group if not isinstance(n, str) or n not in self.members]
        if unknown:
            raise bad_request(f"not members: {unknown!r} (members: {', '.join(self.members)})")
        return list(group)

    async def _forward(self, method: str, path: str, body: dict[str, Any] | None,
                       timeout: float = CONTROL_TIMEOUT) -> Response:
        if self.control_url is None:
            raise ApiError(404, "control_unavailable",
                           "controls exist only on local and lab clusters (no control server here)")
        try:
            async with httpx.AsyncClient(timeout=timeout) as http:
                response = await http.request(method, self.control_url + path, json=body)
            data = response.json()
        except httpx.HTTPError as exc:
            raise ApiError(502, "control_unreachable",
                           f"the control server did not answer: {type(exc).__name__}") from None
        except ValueError:
            raise ApiError(502, "control_failed", "the control server answered something not JSON") from None
        if response.status_code == 504:  # the action did not finish in time (a restart that hangs)
            raise ApiError(504, "control_timeout", "the control server gave up waiting", detail=data)
        if response.status_code >= 500:
            raise ApiError(502, "control_failed", f"the control server failed ({response.status_code})",
                           detail=data)
        return JSONResponse(data, status_code=response.status_code)


def _pairs(raw: list[Any]) -> list[tuple[Any, Any]]:
    return [(p[0], p[1]) for p in raw if isinstance(p, list | tuple) and len(p) == 2]


def ui_routes(node: Node, control_url: str | None = None) -> list[BaseRoute]:
    """The dashboard's routes; ``control_url`` defaults to ``$CONFIGSVC_CONTROL_URL``."""
    ui = Dashboard(node, control_url or os.environ.get(CONTROL_URL_ENV) or None)
    return [
        Route("/ui", ui.page, methods=["GET"]),
        Route("/ui/", ui.page, methods=["GET"]),
        Route("/ui/static/{name}", ui.asset, methods=["GET"]),
        Route("/ui/api/state", ui.state, methods=["GET"]),
        Route("/ui/control/status", ui.control_status, methods=["GET"]),
        Route("/ui/control/{action}", ui.control, methods=["POST"]),
        Route("/ui/control/{action}/{node}", ui.control, methods=["POST"]),
    ]
