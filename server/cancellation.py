"""Client-disconnect cancellation: a request's outstanding chunks are dropped once nobody waits.

A plain FastAPI handler is not cancelled when its client goes away, so these helpers watch the
ASGI `receive` channel for `http.disconnect` and cancel the work themselves. Cancelled futures
are skipped by the batcher (and by RemoteBackend before sending) and counted in
`convoy_cancelled_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.types import Receive

from server.errors import ClientGone

T = TypeVar("T")


def cancel_all(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel every future not yet done (queued chunks then never cost compute)."""
    for fut in futures:
        fut.cancel()


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the client has gone. Only for after the request body was read."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`; if the client disconnects first, cancel it and raise ClientGone (499).

    Use it around the awaiting part of a handler, after the body was parsed:
    `results = await cancel_on_disconnect(request, gather_results(futures))`.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(wait_for_disconnect(request.receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
    finally:  # also when the handler itself is cancelled
        watcher.cancel()
        if not task.done():
            task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise ClientGone("the client disconnected; its work was cancelled")
