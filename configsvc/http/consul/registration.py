"""Consul's service registration body -> ``configsvc.discovery_types.Registration``.

Consul reads field names case-insensitively and accepts snake_case aliases
(``DeregisterCriticalServiceAfter`` = ``deregister_critical_service_after``);
so does this parser. Durations are Go duration strings (``"10s"``) or
integers of nanoseconds, as in Consul.

What maps where:

    Name, ID (default: Name), Address, Port, Tags, Meta   the instance
    Check / Checks: TTL                                    its TTL check
    Check / Checks: HTTP, Interval, Timeout, Method=GET    its HTTP check (run by
                                                           the node it registered with)
    DeregisterCriticalServiceAfter                         removal after that long critical
    Status                                                 the status it starts with

An instance has one health status, so at most one TTL and one HTTP check;
Consul's ``CheckID`` of a service check is ``service:<ID>`` (``service:<ID>:<n>``
when it has several), and no other id is accepted. ``EnableTagOverride`` and
``Weights`` are accepted without effect. Everything else (script, TCP, gRPC,
Docker and alias checks, Connect, proxies, tagged addresses, ...) is a ``400
unsupported`` naming it.
"""

from __future__ import annotations

import json
from typing import Any

from configsvc.discovery_types import HttpCheck, Registration
from configsvc.http.consul.params import parse_duration, unsupported
from configsvc.http.errors import bad_request

_SERVICE_FIELDS = {"name", "id", "address", "port", "tags", "meta", "check", "checks",
                   "enabletagoverride", "weights", "namespace"}
_CHECK_FIELDS = {"ttl", "http", "interval", "timeout", "method", "deregistercriticalserviceafter",
                 "status", "name", "notes", "checkid", "serviceid"}


def fold(obj: Any, where: str) -> dict[str, Any]:
    """A JSON object keyed by its field names lower-cased, without underscores."""
    if not isinstance(obj, dict):
        raise bad_request(f"{where} must be a JSON object")
    return {str(k).lower().replace("_", ""): v for k, v in obj.items()}


def duration(value: Any, what: str) -> float | None:
    """Seconds of a Go duration string or an integer of nanoseconds; None if absent/zero."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise bad_request(f"{what} must be a duration such as \"10s\"")
    if isinstance(value, int):
        seconds = value / 1e9
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value.strip())
        except ValueError as exc:
            raise bad_request(f"{what}: {exc}") from None
    else:
        raise bad_request(f"{what} must be a duration such as \"10s\"")
    if seconds < 0:
        raise bad_request(f"{what} must not be negative")
    return seconds or None


def check_ids(instance_id: str, checks: int) -> list[str]:
    """The CheckIDs Consul gives a service's checks."""
    if checks <= 1:
        return [f"service:{instance_id}"]
    return [f"service:{instance_id}:{n}" for n in range(1, checks + 1)]


def parse_registration(raw: bytes) -> tuple[Registration, str | None]:
    """(the registration, the namespace the body names or None); 400s name the field."""
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise bad_request("the body must be a JSON service definition") from None
    spec = fold(body, "the service definition")
    extra = sorted(k for k in set(spec) - _SERVICE_FIELDS if spec[k] not in (None, "", [], {}, False))
    if extra:
        raise unsupported(f"service field(s) {', '.join(extra)}",
                          f"supported: {', '.join(sorted(_SERVICE_FIELDS))}")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request("Name (the service name) is required")
    instance_id = spec.get("id") or name
    checks = [fold(c, "Check") for c in ([spec["check"]] if spec.get("check") else [])]
    listed = spec.get("checks") or []
    if not isinstance(listed, list):
        raise bad_request("Checks must be a list of check definitions")
    checks += [fold(c, "Checks[]") for c in listed]
    ttl: float | None = None
    http: HttpCheck | None = None
    deregister_after: float | None = None
    status: str | None = None
    allowed_ids = set(check_ids(str(instance_id), len(checks)))
    for check in checks:
        unknown = sorted(k for k in set(check) - _CHECK_FIELDS if check[k] not in (None, "", [], {}, False))
        if unknown:
            raise unsupported(f"check field(s) {', '.join(unknown)}", "TTL and HTTP checks are supported")
        if check.get("checkid") not in (None, "", *allowed_ids):
            raise unsupported(f"CheckID {check['checkid']!r}", f"a service check is {sorted(allowed_ids)[0]!r}")
        if check.get("method") not in (None, "", "GET"):
            raise unsupported(f"HTTP check Method {check['method']!r}", "checks use GET")
        check_ttl = duration(check.get("ttl"), "TTL")
        if check.get("http") and check_ttl is not None:
            raise bad_request("one check has either TTL or HTTP, not both")
        if check_ttl is not None:
            if ttl is not None:
                raise unsupported("several TTL checks", "an instance has one TTL")
            ttl = check_ttl
        elif check.get("http"):
            if http is not None:
                raise unsupported("several HTTP checks", "an instance has one HTTP check")
            interval = duration(check.get("interval"), "Interval")
            if interval is None:
                raise bad_request("an HTTP check needs an Interval")
            timeout = duration(check.get("timeout"), "Timeout") or min(interval, 10.0)
            try:
                http = HttpCheck(check["http"], interval, timeout)
            except ValueError as exc:
                raise bad_request(str(exc)) from None
        else:
            raise bad_request("a check needs TTL or HTTP (other kinds are not supported)")
        after = duration(check.get("deregistercriticalserviceafter"), "DeregisterCriticalServiceAfter")
        if after is not None:
            deregister_after = after if deregister_after is None else min(deregister_after, after)
        if check.get("status"):
            status = check["status"]
    meta = spec.get("meta") or {}
    tags = spec.get("tags") or []
    if not isinstance(meta, dict) or not isinstance(tags, list):
        raise bad_request("Meta must be an object of strings and Tags a list of strings")
    namespace = spec.get("namespace") or None
    if namespace is not None and not isinstance(namespace, str):
        raise bad_request("Namespace must be a string")
    try:
        registration = Registration(
            service=name, instance_id=instance_id, address=spec.get("address") or "",
            port=spec.get("port") or 0, tags=tuple(tags), meta=tuple(meta.items()), ttl=ttl,
            deregister_after=deregister_after, http_check=http,
            # Consul's rule: a checked service is critical until its first check passes.
            status=status or ("critical" if checks else "passing"),
        )
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return registration, namespace
