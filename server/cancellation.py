"""Tie a request's work to its client and its deadline: abandoned or late work is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

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


async def run_cancellable(request: Request, work: Awaitable[T], timeout_s: float) -> T:
    """Await `work`, cancelling it when the client disconnects or the deadline passes.

    A plain FastAPI handler keeps running after its client left; cancelling the work cancels
    the request's chunk futures, which the batcher then drops before they cost compute.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_wait_for_disconnect(request.receive))
    try:
        done, _ = await asyncio.wait({task, watcher}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    if watcher in done:
        raise ClientGone("the client closed the connection")
    raise DeadlineExceeded(f"the request did not finish within its {timeout_s:g} s deadline")


async def _wait_for_disconnect(receive: Receive) -> None:
    # The body has been read already, so the next message can only be the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass
