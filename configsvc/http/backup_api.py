"""Online backup over HTTP: ``GET /v1/cluster/snapshot`` (``docs/backup.md``).

The answer is a backup file (``configsvc.backup``) of the strong state
machine as of a linearizable point:

1. A read barrier first (``StrongDriver.barrier``, the path of the native
   API's linearizable reads: the leader's lease or a quorum round; a follower
   asks the leader for its read index). When it returns, this replica has
   applied every slot committed before the request arrived.
2. Then, with no ``await`` in between, a consistent copy of the state
   (``StateMachine.snapshot_state``) at its applied index, which is therefore
   at or above every write acknowledged before the request: every such write
   is in the backup.
3. The copy is encoded (``StateMachine.encode``, the compaction's encoding)
   and framed off the event loop; the node keeps serving meanwhile.

Any node answers (a follower's barrier goes through the leader). Without a
known leader, or when the barrier times out, the answer is 503 and nothing
is taken. Needs a management token with ACLs on (``acl_needs``), else the
admin token if one is configured.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from configsvc.backup import Backup, encode_backup, file_digest
from configsvc.http.errors import ApiError
from configsvc.http.members_api import authorize_operator
from configsvc.http.node_requests import check_serving
from configsvc.runtime.strong_driver import Halted, NotLeader
from strong.state_machine import StateMachine

if TYPE_CHECKING:
    from configsvc.node import Node

__all__ = ["MEDIA_TYPE", "backup_routes"]

MEDIA_TYPE = "application/vnd.configsvc.backup"


class BackupApi:
    def __init__(self, node: Node) -> None:
        self.node = node

    async def save(self, request: Request) -> Response:
        node = self.node
        check_serving(node)
        authorize_operator(node, request)
        driver = node.strong
        try:
            await driver.barrier(node.config.timing.request_timeout)  # step 1
        except NotLeader as exc:
            raise ApiError(503, "no_quorum", "no leader is known right now; retry shortly",
                           leader=exc.leader_hint) from None
        except TimeoutError:
            raise ApiError(503, "no_quorum", "could not confirm the read index in time") from None
        except Halted as exc:
            raise ApiError(503, "unavailable", str(exc)) from None
        state = driver.sm.snapshot_state()  # step 2: no await since the barrier returned
        taken_at_ms = int(time.time() * 1000)
        started = time.monotonic()

        def encode() -> bytes:  # step 3, in a worker thread
            return encode_backup(Backup(node.config.cluster_id, node.id, state.applied_index,
                                        state.version, taken_at_ms, StateMachine.encode(state)))

        data = await asyncio.to_thread(encode)
        return Response(data, media_type=MEDIA_TYPE, headers={
            "X-Configsvc-Index": str(state.applied_index),
            "X-Configsvc-Sha256": file_digest(data),
            "X-Configsvc-Encode-Ms": str(int((time.monotonic() - started) * 1000)),
        })


def backup_routes(node: Node) -> list[Route]:
    api = BackupApi(node)
    return [Route("/v1/cluster/snapshot", api.save, methods=["GET"])]
