"""Tie a request's work to its client and its deadline: abandoned or late work is cancelled.

A plain FastAPI handler is not cancelled when its client goes away, so these helpers watch the
ASGI `receive` channel for `http.disconnect` and cancel the work themselves. Cancelled futures
are skipped by the batcher (and by the upstream client before sending) and counted in
`convoy_cancelled_total`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from functools import partial
from typing import Any, TypeVar

from starlette.requests import HTTPConnection, Request
from starlette.types import Receive

from server.api.connections import call_on_disconnect
from server.api.middleware import header_value
from server.config import Settings
from server.errors import ClientGone, DeadlineExceeded, InvalidInput

T = TypeVar("T")

TIMEOUT_HEADER = "x-request-timeout"
_TIMEOUT_HEADER_RAW = TIMEOUT_HEADER.encode()


def request_timeout_s(conn: HTTPConnection, settings: Settings) -> float:
    """The request's deadline in seconds: the `X-Request-Timeout` header or the server default."""
    raw = header_value(conn.scope, _TIMEOUT_HEADER_RAW)
    if raw is None:
        return settings.request_timeout_s
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    max_s = settings.max_request_timeout_s
    if not 0 < value <= max_s:
        raise InvalidInput(
            f"X-Request-Timeout must be a number of seconds in (0, {max_s:g}]", param=TIMEOUT_HEADER
        )
    return value


def deadline_exceeded(timeout_s: float) -> DeadlineExceeded:
    return DeadlineExceeded(f"the request did not finish within its {timeout_s:g} s deadline")


def cancel_all(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel every future not yet done (queued chunks then never cost compute)."""
    for fut in futures:
        fut.cancel()


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the client has gone. Only for after the request body was read."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def run_cancellable(
    request: Request, work: Awaitable[T], timeout_s: float, *, deadline: float | None = None
) -> T:
    """Await `work`, cancelling it when the client disconnects or the deadline passes.

    The deadline is `timeout_s` from now, or `deadline` (event-loop time) when the clock started
    earlier. Raises ClientGone (499) or DeadlineExceeded (504); if the handler itself is
    cancelled, the work is cancelled too (`work` is awaited in the handler's own task, so one
    cancellation reaches both). One timer per request, and the connection's own disconnect
    callback (server/api/connections.py), or a task watching `receive` where there is none.
    """
    loop = asyncio.get_running_loop()
    if deadline is None:
        deadline = loop.time() + timeout_s
    handler = asyncio.current_task()
    assert handler is not None
    # Why the handler was cancelled, when this function cancelled it; None while it runs.
    reason: str | None = None

    def stop(why: str) -> None:
        nonlocal reason
        if reason is None:
            reason = why
            handler.cancel()

    def on_disconnect(watcher: asyncio.Task[None]) -> None:
        if not watcher.cancelled():
            stop("client")

    forget = call_on_disconnect(request.receive, partial(stop, "client"))
    watcher: asyncio.Task[None] | None = None
    if forget is None:
        watcher = asyncio.create_task(wait_for_disconnect(request.receive))
        watcher.add_done_callback(on_disconnect)
    # A bare timer, not asyncio.timeout(): a third of the cost, and one cancel path for both.
    timer = loop.call_at(deadline, stop, "deadline")
    try:
        return await work
    except asyncio.CancelledError:
        if reason is None:
            raise  # cancelled from outside (the server stopping): not ours to answer
        handler.uncancel()
        if reason == "deadline":
            raise deadline_exceeded(timeout_s) from None
        raise ClientGone("the client closed the connection; its work was cancelled") from None
    finally:
        reason = reason or "done"  # a disconnect or deadline from now on must not cancel anything
        timer.cancel()
        if watcher is not None:
            watcher.cancel()
        elif forget is not None:
            forget()
