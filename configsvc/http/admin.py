"""Admin endpoints: fault injection on this node's peer links (the partition lab's lever).

Every call needs ``Authorization: Bearer <security.admin_token>``; without a
configured token the endpoints are disabled (``403 admin_disabled``). Tokens
are compared in constant time.

    GET    /v1/admin/faults               the faults in force
    PUT    /v1/admin/faults/{peer}        {"drop_out": bool, "drop_in": bool, "delay": seconds}
    DELETE /v1/admin/faults               clear every fault
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from configsvc.http.errors import ApiError, bad_request
from configsvc.http.node_requests import check_serving, read_body, require_admin_bearer

if TYPE_CHECKING:
    from configsvc.node import Node


class AdminApi:
    def __init__(self, node: Node) -> None:
        self.node = node

    def _authorize(self, request: Request) -> None:
        check_serving(self.node)
        token = self.node.config.security.admin_token
        if token is None:
            raise ApiError(403, "admin_disabled", "no admin_token is configured for this cluster")
        require_admin_bearer(request, token)

    def _faults(self) -> dict[str, dict[str, object]]:
        assert self.node.transport is not None
        return {
            peer: {"drop_out": f.drop_out, "drop_in": f.drop_in, "delay": f.delay}
            for peer, f in sorted(self.node.transport.faults().items())
        }

    async def list_faults(self, request: Request) -> Response:
        self._authorize(request)
        return JSONResponse({"node": self.node.id, "faults": self._faults()})

    async def set_fault(self, request: Request) -> Response:
        self._authorize(request)
        assert self.node.transport is not None
        peer = request.path_params["peer"]
        if peer not in self.node.transport.peers:
            raise ApiError(404, "peer_not_found", f"{peer!r} is not a peer of {self.node.id}")
        raw = await read_body(request, 4096, "body_too_large")
        try:
            spec = json.loads(raw or b"{}")
            drop_out, drop_in = spec.get("drop_out", False), spec.get("drop_in", False)
            delay = spec.get("delay", 0.0)
            if not (isinstance(drop_out, bool) and isinstance(drop_in, bool)):
                raise ValueError("drop_out and drop_in must be booleans")
            if isinstance(delay, bool) or not isinstance(delay, int | float):
                raise ValueError("delay must be a number of seconds")
            self.node.transport.set_fault(peer, drop_out=drop_out, drop_in=drop_in, delay=float(delay))
        except (ValueError, AttributeError) as exc:
            raise bad_request(f"invalid fault: {exc}") from None
        return JSONResponse({"node": self.node.id, "faults": self._faults()})

    async def clear_faults(self, request: Request) -> Response:
        self._authorize(request)
        assert self.node.transport is not None
        self.node.transport.clear_faults()
        return JSONResponse({"node": self.node.id, "faults": {}})
