"""``configsvc member list|add|remove|replace|transfer-leader``: the operator's side of
membership changes.

Every change is single-server and runs on the leader (docs/membership.md):
a request that reaches a follower is answered ``503 not_leader`` with the
leader's API address, and is sent there. The steps:

- ``add ID``: add ID as a learner, then (unless ``--learner``) promote it,
  retrying the promotion while the leader answers that the learner is still
  behind.
- ``remove ID``: remove a voter or learner; its id is retired for good.
  Removing the leader: it hands leadership off first (``strong.handoff``)
  and answers ``not_leader`` naming its successor, which removes it.
- ``transfer-leader [ID]``: hand leadership to ID, or to the most caught-up
  live voter (before maintenance of the leader's machine).
- ``replace OLD NEW``: add NEW as a learner, promote it once caught up, then
  remove OLD. Adding first keeps the group's fault tolerance while NEW
  catches up (a learner counts in no quorum), and leaves only the short
  window between the promotion and the removal with one more voter; removing
  a dead OLD first would run the whole catch-up with a smaller group.
  A node reset after losing its disk (non-voting, ``strong.replica`` rule 7)
  comes back only this way, under a new id.

Exit codes: 0 done, 1 refused or failed (the reason is printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

#: seconds a step may take, leader changes and catch-up included
STEP_DEADLINE = 120.0


class MemberError(Exception):
    """A change was refused or could not be made; the message says why."""


def add_parser(sub: Any, endpoint: Any) -> None:
    member = sub.add_parser("member", help="the strong group's membership: list, add, remove, replace")
    msub = member.add_subparsers(dest="member_command", required=True)
    endpoint(msub.add_parser("list"))
    add = msub.add_parser("add", help="add a node as a learner, then promote it")
    add.add_argument("id")
    add.add_argument("--learner", action="store_true", help="stop once it is a learner")
    remove = msub.add_parser("remove", help="remove a node (its id is never reused)")
    remove.add_argument("id")
    replace = msub.add_parser("replace", help="add NEW, promote it, remove OLD")
    replace.add_argument("old")
    replace.add_argument("new")
    transfer = msub.add_parser("transfer-leader", help="hand leadership to another voter")
    transfer.add_argument("id", nargs="?", help="the voter to lead (default: the most caught up)")
    for p in (add, replace):
        p.add_argument("--peer-address", required=True, metavar="HOST:PORT")
        p.add_argument("--api-address", required=True, metavar="HOST:PORT")
    for p in (add, remove, replace, transfer):
        endpoint(p)  # --token: the ACL token (management), or the admin token with ACLs off
    member.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from configsvc.cli import TOKEN_ENV

    admin = Admin(args.endpoint, args.token or os.environ.get(TOKEN_ENV) or None)
    try:
        if args.member_command == "list":
            print_members(admin.members())
        elif args.member_command == "add":
            admin.add(args.id, args.peer_address, args.api_address, promote=not args.learner)
        elif args.member_command == "remove":
            admin.remove(args.id)
        elif args.member_command == "transfer-leader":
            admin.transfer_leader(args.id)
        else:
            admin.add(args.new, args.peer_address, args.api_address, promote=True)
            admin.remove(args.old)
    except (MemberError, httpx.HTTPError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.member_command != "list":
        print_members(admin.members())
    return 0


def print_members(view: dict[str, Any]) -> None:
    print(f"leader={view['leader']} quorum={view['quorum']} commit={view['commit_index']}")
    for m in view["members"]:
        print(f"  {m['id']:12} {m['role']:8} peer={m['peer_address']} api={m['api_address']}")
    if view["retired"]:
        print(f"  retired (never reused): {', '.join(view['retired'])}")


class Admin:
    def __init__(self, endpoint: str, token: str | None) -> None:
        self.endpoint = endpoint.rstrip("/")
        #: where the configuration is read: the leader once one answered (a node
        #: being removed never learns it, so its own view is no judge of "done")
        self.current = self.endpoint
        self.scheme = urlsplit(self.endpoint).scheme or "http"
        self.headers = {"authorization": f"Bearer {token}"} if token else {}

    def members(self) -> dict[str, Any]:
        try:
            resp = httpx.get(f"{self.current}/v1/cluster/members", headers=self.headers,
                             timeout=10.0)
        except httpx.TransportError:
            if self.current == self.endpoint:
                raise
            self.current = self.endpoint
            return self.members()
        resp.raise_for_status()
        view: dict[str, Any] = resp.json()
        return view

    def add(self, nid: str, peer: str, api: str, *, promote: bool) -> None:
        def known() -> bool:
            view = self.members()
            return nid in view["learners"] + view["voters"]

        self._change("POST", "/v1/cluster/members",
                     {"id": nid, "peer_address": peer, "api_address": api}, known)
        print(f"{nid} is a learner")
        if promote:
            self._change("POST", f"/v1/cluster/members/{nid}/promote", None,
                         lambda: nid in self.members()["voters"], behind_ok=True)
            print(f"{nid} is a voter")

    def remove(self, nid: str) -> None:
        def gone() -> bool:
            view = self.members()
            return nid not in view["learners"] + view["voters"]

        self._change("DELETE", f"/v1/cluster/members/{nid}", None, gone)
        print(f"{nid} removed")

    def transfer_leader(self, to: str | None) -> None:
        before = self.members()["leader"]

        def moved() -> bool:
            leader = self.members()["leader"]
            return leader is not None and leader != before and to in (None, leader)

        if to is not None and to == before:
            raise MemberError(f"{to} already leads")
        self._change("POST", "/v1/cluster/leader/transfer", {"to": to} if to else {}, moved)
        print(f"leadership moved from {before} to {self.members()['leader']}")

    def _change(self, method: str, path: str, body: dict[str, str] | None,
                done: Callable[[], bool], *, behind_ok: bool = False) -> None:
        """Send a change to the leader, following ``not_leader`` answers, until
        ``done()`` holds; retry while no leader is known, the outcome is unknown
        or (``behind_ok``) the learner is behind."""
        deadline = time.monotonic() + STEP_DEADLINE
        target = self.endpoint
        while not done():
            try:
                resp = httpx.request(method, target + path, json=body, headers=self.headers,
                                     timeout=30.0)
            except httpx.TransportError:
                resp = None
                target = self.endpoint
            if resp is not None and resp.status_code == 200:
                self.current = target
                while not done():  # the endpoint asked may apply it a little later
                    if time.monotonic() > deadline:
                        raise MemberError("the change was made but is not visible yet")
                    time.sleep(0.1)  # pacing of a poll with a deadline
                return
            error = resp.json().get("error", {}) if resp is not None else {}
            code, message = error.get("code", ""), error.get("message", "")
            if code == "not_leader" and error.get("leader_api"):
                target = f"{self.scheme}://{error['leader_api']}"
            elif code.endswith("_refused") and not (behind_ok and "behind" in message):
                if done():  # an earlier attempt of ours, whose answer was lost
                    return
                raise MemberError(message)
            elif resp is not None and resp.status_code not in (409, 503, 504):
                raise MemberError(f"{resp.status_code} {code}: {message}")
            if time.monotonic() > deadline:
                raise MemberError(f"gave up after {STEP_DEADLINE:.0f}s: {message or 'no leader'}")
            time.sleep(0.2)  # a retry's pacing: the leader is elected or the learner catches up
