"""Blocking queries (``?index=I&wait=D``) of the Consul face, for both stores.

A blocking query returns when something under it changed since ``I``, or when
the wait ends (an answer without a change is allowed, as in Consul; a missed
change is not). Both stores follow one rule:

- if this node's index has already passed ``I`` when the query arrives,
  something may have changed since the client's answer: answer at once;
- otherwise the content under the query now is what the client saw (or,
  on a replica still behind the client's answer, older): wait until that
  content differs — any write to a key under the query changes it (a strong
  key's mod revision, an eventual key's dots), a delete removes it.

The wait happens on the node the request arrived at (a read that must go to
the leader is forwarded once the wait is over, as in the native API).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Generic, TypeVar

from configsvc.http.consul.consistency import eventual_index
from configsvc.http.strong_api import StrongApi
from strong.ops import Get, Range

if TYPE_CHECKING:
    from configsvc.node import Node

T = TypeVar("T")


async def block_strong(node: Node, strong: StrongApi, op: Get | Range, index: int, wait: float) -> None:
    """Return once ``op``'s content changed after revision ``index`` (or the wait ends):
    the native API's rule (``StrongApi.changed_since``)."""
    changed = strong.changed_since(op, index) if index else None
    if changed is not None:
        await node.strong.wait_for_change(changed, wait)


class EventualRead(Generic[T]):
    """One local read of an eventual namespace and the namespace's change index as
    of that read (never claiming more than the read saw)."""

    def __init__(self, index: int, answer: T, token: str) -> None:
        self.index = index
        self.answer = answer
        self.token = token


async def block_eventual(
    node: Node, ns: str, index: int, wait: float,
    read: Callable[[], Awaitable[EventualRead[T]]], content: Callable[[T], Hashable],
) -> EventualRead[T]:
    """Read; with ``index``, read again until the content differs from the first
    read's (or the wait ends) unless the namespace's index had passed ``index``."""
    current = await read()
    if not index or current.index > index:
        return current
    seen = content(current.answer)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while (remaining := deadline - loop.time()) > 0:
        # No await between this check and the wait: a change cannot slip between.
        if eventual_index(node, ns) <= current.index:
            await node.eventual.wait_for_change(remaining)
            continue
        current = await read()
        if content(current.answer) != seen:
            break
    return current
