"""Stop work a client no longer waits for: await a coroutine, cancelling it when the client disconnects.

Streamed responses notice a disconnect when a write fails; a request that answers only at the end writes
nothing until then, so without this it would keep the model busy for an answer nobody reads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import Request

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away before the answer was ready; the work was cancelled."""


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """`await work`, unless the client disconnects first: then cancel it and raise ClientDisconnected."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this request itself is cancelled (server shutdown)
        watcher.cancel()
        if not task.done():
            task.cancel()
    if task.done() and not task.cancelled():
        return task.result()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise ClientDisconnected


async def _disconnect(request: Request) -> None:
    """Return when the client disconnects (the request body has been read: nothing else can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
