"""Query parameters the native API's endpoints share, checked one way everywhere.

A malformed parameter is a ``400 invalid_argument`` naming it, before anything
happens (the error contract in ``configsvc.http.errors``).
"""

from __future__ import annotations

import math

from starlette.requests import Request

from configsvc.http.errors import bad_request


def wait_seconds(request: Request, default: float) -> float:
    """``?wait=S`` of a blocking read: a finite number of seconds ``>= 0``
    (``default`` when absent). Checked even when the read will not block."""
    text = request.query_params.get("wait")
    if text is None:
        return default
    try:
        wait = float(text)
    except ValueError:
        raise bad_request("wait must be a number of seconds") from None
    if not math.isfinite(wait) or wait < 0:
        raise bad_request("wait must be a non-negative number of seconds")
    return wait


def flag(request: Request, name: str) -> bool:
    """``?name=true|1`` or ``false|0`` (absent: false). Anything else is a 400: a
    mistyped ``recurse`` must not quietly delete one key instead of a prefix."""
    text = request.query_params.get(name)
    if text is None or text in ("0", "false"):
        return False
    if text in ("1", "true"):
        return True
    raise bad_request(f"{name} must be true or false")


def unsupported_here(request: Request, names: tuple[str, ...], why: str) -> None:
    """A 400 if the request carries any of ``names``, which this kind of namespace
    does not have: ignoring them would do something other than what was asked."""
    present = [n for n in names if n in request.query_params]
    if present:
        raise bad_request(f"{', '.join(present)} not supported here: {why}")
