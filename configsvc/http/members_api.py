"""The strong group's membership over HTTP (``strong.replica`` rules 10-15).

    GET    /v1/cluster/members                 the configuration this node committed
    POST   /v1/cluster/members                 {"id", "peer_address", "api_address"}: add a learner
    POST   /v1/cluster/members/{id}/promote    a caught-up learner becomes a voter
    DELETE /v1/cluster/members/{id}        remove a voter or learner (its id is retired)
    POST   /v1/cluster/leader/transfer         {"to": id} (optional): hand leadership off

Changes run on the leader only: a follower answers ``503 not_leader`` with
the leader's id and API address (``leader``, ``leader_api``), and the client
asks it (``configsvc member``). Changes need ``Authorization: Bearer
<security.admin_token>`` when a token is configured. A change the leader
refuses (another change pending, an id used before, a learner not caught
up, a quorum it would lose) is ``409 membership_refused`` with the reason;
nothing changed. ``504 outcome_unknown``: proposed, then leadership moved:
read the members to know. Removing the leader hands leadership off first
(``strong.handoff``): the answer is ``503 not_leader`` naming the successor,
and the client asks it again, where it is an ordinary removal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from configsvc.http.errors import ApiError, bad_request, json_object
from configsvc.http.node_requests import check_serving, read_body, require_admin_bearer
from configsvc.member_addresses import member_address
from configsvc.node_members import parse_address
from configsvc.runtime.strong_driver import Halted, OutcomeUnknown
from strong.member_log import ChangeKind, ChangeOutcome, ChangeStatus, MembershipChange
from strong.membership import Member

if TYPE_CHECKING:
    from configsvc.node import Node


class MembersApi:
    def __init__(self, node: Node) -> None:
        self.node = node

    def _api_address(self, node_id: str) -> str | None:
        m = member_address(self.node, node_id)
        return m.api_address if m is not None and m.api_address else None

    def _view(self) -> dict[str, Any]:
        members = self.node.strong.members
        status = self.node.strong.status()
        entries = []
        for nid in members.members:
            known = member_address(self.node, nid)
            peer = known.peer_address if known else ""
            entries.append({"id": nid, "role": "voter" if nid in members.voters else "learner",
                            "peer_address": peer, "api_address": self._api_address(nid) or "",
                            "commit_index": status.peer_commit.get(nid)})
        return {"node": self.node.id, "leader": status.leader,
                "leader_api": self._api_address(status.leader) if status.leader else None,
                "voters": list(members.voters), "learners": list(members.learners),
                "retired": list(members.retired), "quorum": members.quorum,
                "commit_index": status.commit_index, "members": entries}

    async def list(self, request: Request) -> Response:
        check_serving(self.node)
        return JSONResponse(self._view())

    async def add(self, request: Request) -> Response:
        body = json_object(await read_body(request, 4096, "body_too_large"))
        nid, peer, api = body.get("id"), body.get("peer_address"), body.get("api_address")
        if not all(isinstance(v, str) and v for v in (nid, peer, api)):
            raise bad_request("id, peer_address and api_address are required strings")
        assert isinstance(nid, str) and isinstance(peer, str) and isinstance(api, str)
        for address in (peer, api):
            try:
                parse_address(address)
            except ValueError as exc:
                raise bad_request(str(exc)) from None
        return await self._change(request, ChangeKind.ADD_LEARNER, Member(nid, peer, api))

    async def promote(self, request: Request) -> Response:
        return await self._change(request, ChangeKind.PROMOTE, Member(request.path_params["id"]))

    async def remove(self, request: Request) -> Response:
        return await self._change(request, ChangeKind.REMOVE, Member(request.path_params["id"]))

    async def _on_leader(self, request: Request, what: str,
                         ask: Callable[[float], Awaitable[ChangeOutcome]]) -> ChangeOutcome:
        """Authorize, check that this node leads (``what`` runs on the leader), and
        await the replica's outcome of ``ask(timeout)``; driver errors become API errors."""
        check_serving(self.node)
        self._authorize(request)
        status = self.node.strong.status()
        if status.leader != self.node.id:
            raise ApiError(503, "not_leader", f"{what} runs on the leader",
                           leader=status.leader,
                           leader_api=self._api_address(status.leader) if status.leader else None)
        try:
            return await ask(self.node.config.timing.request_timeout)
        except OutcomeUnknown:
            raise ApiError(504, "outcome_unknown",
                           "no outcome in time: read the members to know") from None
        except Halted as exc:
            raise ApiError(503, "unavailable", str(exc)) from None

    async def _change(self, request: Request, kind: ChangeKind, member: Member) -> Response:
        change = MembershipChange(kind, member)
        outcome = await self._on_leader(request, "a membership change",
                                        lambda t: self.node.strong.change_members(change, t))
        self._raise_for(outcome, "membership_refused")
        return JSONResponse({**self._view(), "slot": outcome.slot})

    async def transfer(self, request: Request) -> Response:
        """Hand leadership to ``to`` (or the most caught-up live voter)."""
        body = json_object(await read_body(request, 4096, "body_too_large"))  # empty: {}
        target = body.get("to")
        if target is not None and (not isinstance(target, str) or not target):
            raise bad_request("to: expected a node id")
        outcome = await self._on_leader(request, "a leadership transfer",
                                        lambda t: self.node.strong.transfer_leadership(target, t))
        if outcome.status is not ChangeStatus.HANDED_OFF:
            self._raise_for(outcome, "transfer_refused")
        leader = outcome.leader_hint
        return JSONResponse({"previous": self.node.id, "leader": leader,
                             "leader_api": self._api_address(leader) if leader else None})

    def _raise_for(self, outcome: ChangeOutcome, refused_code: str) -> None:
        """The API error of an outcome other than DONE (nothing else raises)."""
        hint = outcome.leader_hint
        if outcome.status is ChangeStatus.HANDED_OFF or (
                outcome.status is ChangeStatus.REFUSED and outcome.detail == "not the leader"):
            raise ApiError(503, "not_leader", f"{outcome.detail}: ask the leader",
                           leader=hint, leader_api=self._api_address(hint) if hint else None)
        if outcome.status is ChangeStatus.REFUSED:
            raise ApiError(409, refused_code, outcome.detail)
        if outcome.status is ChangeStatus.UNKNOWN:
            raise ApiError(504, "outcome_unknown", outcome.detail)

    def _authorize(self, request: Request) -> None:
        authorize_operator(self.node, request)


def authorize_operator(node: Node, request: Request) -> None:
    """An operator's act (a membership change, a backup): with ACLs on, the ACL
    guard already required a management token (``configsvc.http.acl_needs``);
    otherwise the admin token, if one is set."""
    token = node.config.security.admin_token
    if token is None or node.config.acl.enabled:
        return
    require_admin_bearer(request, token)


def members_routes(node: Node) -> list[Route]:
    api = MembersApi(node)
    return [
        Route("/v1/cluster/members", api.list, methods=["GET"]),
        Route("/v1/cluster/members", api.add, methods=["POST"]),
        Route("/v1/cluster/members/{id}/promote", api.promote, methods=["POST"]),
        Route("/v1/cluster/members/{id}", api.remove, methods=["DELETE"]),
        Route("/v1/cluster/leader/transfer", api.transfer, methods=["POST"]),
    ]
