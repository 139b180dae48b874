"""Stop work for HTTP clients that have gone away.

Starlette does not cancel a handler when its client disconnects, so without
this a request whose client closed the connection still held its place in the
batcher queue and ran through the model. `cancel_on_disconnect` runs the
handler's work as a task and checks the connection while it waits. When the
client is gone it cancels the task, and the batcher drops the request's
queued prompts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

ResultT = TypeVar("ResultT")

# How often a waiting request checks its connection. Each check is one
# non-blocking receive() on the ASGI channel.
POLL_INTERVAL_S = 0.2


class ClientDisconnected(Exception):
    """The HTTP client closed the connection before its response was ready."""


async def cancel_on_disconnect(request: Request, work: Awaitable[ResultT], poll_interval_s: float = POLL_INTERVAL_S) -> ResultT:
    """Return the result of `work`, or cancel it and raise ClientDisconnected once the client is gone."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_interval_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise ClientDisconnected
    except asyncio.CancelledError:
        task.cancel()
        raise
