"""The error contract, everywhere: a clear JSON error with a stable code.

    {"error": {"code": "namespace_not_found", "message": "..."}}

Rules: bad input is 4xx and changes nothing; ``503`` means "not done, safe to
retry" and is used only when that is true; a write whose outcome is unknown
(proposed, no result in time) is ``504 outcome_unknown``; a client's mistake
is never a 500.

Codes and statuses (stable; clients switch on ``code``):

    invalid_argument 400    key_too_long 400      value_too_large 413
    body_too_large 413      namespace_not_found 404  key_not_found 404
    wrong_consistency 400   namespace_exists 409  cas_failed 412
    txn_failed 409          causally_behind 409   unauthorized 401
    not_leader 503          no_quorum 503         unavailable 503
    outcome_unknown 504     internal 500
    too_many_operations 413 request_timeout 408   rate_limited 429
    too_many_watchers 429   too_many_connections 429   (docs/limits.md)
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match

log = logging.getLogger("configsvc.http")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def response(self) -> JSONResponse:
        body: dict[str, object] = {"code": self.code, "message": self.message, **self.extra}
        headers = {"Retry-After": "1"} if self.status == 503 else None
        return JSONResponse({"error": body}, status_code=self.status, headers=headers)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "invalid_argument", message)


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (empty: ``{}``); else a 400."""
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise bad_request("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    return data


def method_not_allowed(request: Request, message: str) -> JSONResponse:
    """``405 method_not_allowed`` with the ``Allow`` header RFC 9110 requires: every
    method some route of the app takes at this path."""
    allowed: set[str] = set()
    for route in getattr(request.scope.get("app"), "routes", ()):
        methods = getattr(route, "methods", None)
        if methods and route.matches(request.scope)[0] is not Match.NONE:
            allowed |= methods
    response = ApiError(405, "method_not_allowed", message).response()
    response.headers["Allow"] = ", ".join(sorted(allowed))
    return response


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return exc.response()


async def internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return ApiError(500, "internal", f"internal error: {type(exc).__name__}").response()
