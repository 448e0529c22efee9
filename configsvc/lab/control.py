"""The control API of a running local cluster: kill, restart, cut and heal from outside.

``cluster up`` runs a ``ControlServer`` next to its nodes (loopback only, a
random free port) and writes where it is to a state file, so ``configsvc
cluster kill|restart|partition|isolate|one-way|heal|status`` in another
terminal, and the dashboard's buttons (through the node, which learns the
URL from ``CONFIGSVC_CONTROL_URL``), can drive it. JSON over HTTP:

    GET  /status                 the supervisor's status (nodes, roles, exits, cut links)
    POST /kill/{node}            {"signal": "KILL" | "TERM" | "INT" | "STOP" | "CONT"} (default KILL)
    POST /restart/{node}
    POST /partition              {"groups": [["n1", "n2"], ["n3", "n4", "n5"]]}
    POST /isolate/{node}
    POST /one-way                {"from": ["n1"], "to": ["n2", "n3"]}
    POST /heal

Every answer is the status after the action; errors are ``{"error": {"code",
"message"}}`` with 400 (bad body), 404 (unknown node or path) or 409 (the
action does not apply, e.g. killing a stopped node). Actions are serialized
(``lock``; the supervisor's own loop takes the same lock); ``/status`` is
answered without it, so it never waits behind a restart.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from configsvc.lab.supervisor import SIGNALS, Supervisor

__all__ = ["ControlError", "ControlServer", "control_client", "state_file"]

MAX_BODY = 64 * 1024


class ControlError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def state_file() -> Path:
    """Where a running ``cluster up`` says how to reach its control API."""
    return Path(tempfile.gettempdir()) / f"configsvc-cluster-{os.getuid()}.json"


def _groups(value: Any, what: str) -> list[list[str]]:
    if not isinstance(value, list) or not all(
            isinstance(g, list) and all(isinstance(n, str) for n in g) for g in value):
        raise ControlError(400, "invalid_argument", f"{what} must be a list of lists of node ids")
    return value


def _names(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(n, str) for n in value):
        raise ControlError(400, "invalid_argument", f"{what} must be a non-empty list of node ids")
    return value


class ControlServer:
    def __init__(self, supervisor: Supervisor, port: int = 0, host: str = "127.0.0.1") -> None:
        """``host``: loopback, or the lab bridge's address when the nodes live in
        network namespaces (they cannot reach the root namespace's loopback)."""
        self.supervisor = supervisor
        self.lock = threading.Lock()
        control = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:  # quiet: the supervisor prints what matters
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller gave up waiting (e.g. during a restart): nobody to tell

            def _handle(self, method: str) -> None:
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    if not 0 <= length <= MAX_BODY:
                        raise ControlError(413, "body_too_large", f"bodies are at most {MAX_BODY} bytes")
                    raw = self.rfile.read(length) if length else b""
                    try:
                        body = json.loads(raw) if raw else {}
                    except (ValueError, UnicodeDecodeError):
                        raise ControlError(400, "invalid_argument", "the body must be JSON") from None
                    if not isinstance(body, dict):
                        raise ControlError(400, "invalid_argument", "the body must be a JSON object")
                    self._answer(200, control.dispatch(method, self.path, body))
                except ControlError as exc:
                    self._answer(exc.status, {"error": {"code": exc.code, "message": str(exc)}})
                except Exception as exc:  # never leave the caller without an answer
                    self._answer(500, {"error": {"code": "internal", "message": repr(exc)}})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()  # (waits for serve_forever: only if it runs)
        self.httpd.server_close()

    def dispatch(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        parts = [p for p in path.split("?")[0].split("/") if p]
        sup = self.supervisor
        if (method, parts) == ("GET", ["status"]):
            return sup.status()  # read only: never waits behind a restart
        with self.lock:
            try:
                match method, parts:
                    case "GET", ["status"]:
                        pass
                    case "POST", ["kill", node]:
                        name = body.get("signal", "KILL")
                        if name not in SIGNALS:
                            raise ControlError(400, "invalid_argument",
                                               f"signal must be one of {', '.join(SIGNALS)}")
                        sup.kill(node, SIGNALS[name])
                    case "POST", ["restart", node]:
                        sup.restart(node)
                    case "POST", ["partition"]:
                        groups = _groups(body.get("groups"), "groups")
                        if len(groups) < 2:
                            raise ControlError(400, "invalid_argument", "a partition has two or more groups")
                        sup.partition(*groups)
                    case "POST", ["isolate", node]:
                        sup.isolate(node)
                    case "POST", ["one-way"]:
                        src, dst = _names(body.get("from"), "from"), _names(body.get("to"), "to")
                        sup.one_way(src, dst)
                    case "POST", ["heal"]:
                        sup.heal()
                    case _:
                        raise ControlError(404, "not_found", f"no control action {method} {path}")
            except LookupError as exc:
                code = 404 if "no node" in str(exc) else 409
                raise ControlError(code, "node_not_found" if code == 404 else "conflict",
                                   str(exc).strip("'\"")) from None
            except ValueError as exc:
                raise ControlError(400, "invalid_argument", str(exc)) from None
            except TimeoutError as exc:
                raise ControlError(504, "timeout", str(exc)) from None
            return sup.status()


def control_client(url: str | None = None) -> tuple[str, httpx.Client]:
    """The control URL of the running local cluster (``url``, or the state file's) and a client."""
    if url is None:
        path = state_file()
        try:
            url = json.loads(path.read_text())["control"]
        except (OSError, ValueError, KeyError):
            raise ControlError(404, "no_cluster", f"no running local cluster found ({path} missing); "
                               "start one with `configsvc cluster up` or pass --control URL") from None
    return str(url), httpx.Client(base_url=str(url), timeout=60.0)
