"""The client calls of a replica, one method per request type.

Each builds the request object (``eventual.requests``) and hands it to
``submit``; the answer arrives later in ``Ready.replies`` under the same
``request_id``. ``token`` is the session token of the client's last answer
(None for a new session); ``context`` is the read context of the value a
write or delete supersedes (None: a blind write / remove what this replica
has seen).
"""

from __future__ import annotations

from eventual.instances import PASSING, InstanceInfo, Status
from eventual.requests import (
    Delete,
    Deregister,
    Get,
    Heartbeat,
    Instances,
    List,
    Put,
    Register,
    Request,
)

__all__ = ["ClientCalls"]


class ClientCalls:
    def submit(self, request_id: int, request: Request, token: str | None, now: float) -> None:
        raise NotImplementedError

    def get(self, request_id: int, namespace: str, key: str, *, token: str | None = None,
            now: float) -> None:
        self.submit(request_id, Get(namespace, key), token, now)

    def put(self, request_id: int, namespace: str, key: str, value: bytes, *,
            context: str | None = None, idempotency_key: str | None = None,
            token: str | None = None, now: float) -> None:
        self.submit(request_id, Put(namespace, key, value, context, idempotency_key), token, now)

    def delete(self, request_id: int, namespace: str, key: str, *, context: str | None = None,
               idempotency_key: str | None = None, token: str | None = None,
               now: float) -> None:
        self.submit(request_id, Delete(namespace, key, context, idempotency_key), token, now)

    def list(self, request_id: int, namespace: str, prefix: str, *, token: str | None = None,
             now: float) -> None:
        self.submit(request_id, List(namespace, prefix), token, now)

    def register(self, request_id: int, namespace: str, service: str, instance_id: str,
                 info: InstanceInfo, *, token: str | None = None, now: float) -> None:
        self.submit(request_id, Register(namespace, service, instance_id, info), token, now)

    def heartbeat(self, request_id: int, namespace: str, service: str, instance_id: str, *,
                  status: Status = PASSING, output: str = "", token: str | None = None,
                  now: float) -> None:
        self.submit(request_id, Heartbeat(namespace, service, instance_id, status, output),
                    token, now)

    def deregister(self, request_id: int, namespace: str, service: str, instance_id: str, *,
                   token: str | None = None, now: float) -> None:
        self.submit(request_id, Deregister(namespace, service, instance_id), token, now)

    def instances(self, request_id: int, namespace: str, service: str, *,
                  token: str | None = None, now: float) -> None:
        self.submit(request_id, Instances(namespace, service), token, now)
