"""Tie a request's work to its client and its deadline: abandoned or late work is cancelled.

A plain FastAPI handler is not cancelled when its client goes away, so these helpers watch the
ASGI `receive` channel for `http.disconnect` and cancel the work themselves. Cancelled futures
are skipped by the batcher (and by RemoteBackend before sending) and counted in
`convoy_cancelled_total`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.types import Receive

from server.errors import ClientGone, DeadlineExceeded, InvalidInput

T = TypeVar("T")

TIMEOUT_HEADER = "x-request-timeout"


def request_timeout_s(request: Request, default_s: float, max_s: float) -> float:
    """The request's deadline: the `X-Request-Timeout` header (seconds) or the server default."""
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return default_s
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= max_s:
        raise InvalidInput(
            f"X-Request-Timeout must be a number of seconds in (0, {max_s:g}]", param=TIMEOUT_HEADER
        )
    return value


def cancel_all(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel every future not yet done (queued chunks then never cost compute)."""
    for fut in futures:
        fut.cancel()


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the client has gone. Only for after the request body was read."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def run_cancellable(request: Request, work: Awaitable[T], timeout_s: float | None = None) -> T:
    """Await `work`, cancelling it when the client disconnects or the deadline passes.

    Raises ClientGone (499) or DeadlineExceeded (504); if the handler itself is cancelled, the
    work is cancelled too. One watcher task and one timer per request, no asyncio.wait.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(wait_for_disconnect(request.receive))
    watcher.add_done_callback(lambda _: task.cancel())
    try:
        async with asyncio.timeout(timeout_s):
            return await task
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            raise ClientGone("the client closed the connection; its work was cancelled") from None
        raise
    except TimeoutError:
        raise DeadlineExceeded(f"the request did not finish within its {timeout_s:g} s deadline") from None
    finally:
        watcher.cancel()
        task.cancel()


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """`run_cancellable` without a deadline (the work bounds its own time, e.g. per-chunk timeouts)."""
    return await run_cancellable(request, work)
