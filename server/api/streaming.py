"""Per-chunk progress of one request (as each chunk completes), and its text/event-stream response."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from server.api.cancellation import deadline_exceeded, wait_for_disconnect
from server.api.inputs import Pending
from server.api.predictions import aggregate, chunk_predictions
from server.batching.backend import BackendInfo, ItemResult
from server.chunking import Chunk
from server.errors import ConvoyError, error_body

log = logging.getLogger("convoy.streaming")


class ChunkProgress:
    """One request's chunks in flight: a `chunk` event as each completes, then `done`.

    Events are (name, data) pairs; the SSE and WebSocket routes only frame them. If the
    request's deadline passes first, an `error` event (`deadline_exceeded`) ends the events
    instead of `done`, and the chunks still queued are cancelled. `cancel()` drops whatever is
    still outstanding (queued chunks are then never computed).
    """

    def __init__(self, info: BackendInfo, chunks: Sequence[Chunk], pending: Pending) -> None:
        self.info = info
        self.chunks = list(chunks)
        self.pending = pending

    def cancel(self) -> None:
        self.pending.cancel()

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        futures = self.pending.futures
        done: asyncio.Queue[int] = asyncio.Queue()
        for i, fut in enumerate(futures):
            fut.add_done_callback(functools.partial(_put_index, done, i))
        ok: list[ItemResult] = []
        for _ in futures:
            try:
                async with asyncio.timeout_at(self.pending.deadline):
                    i = await done.get()
            except TimeoutError:
                self.cancel()
                yield "error", deadline_exceeded(self.pending.timeout_s).body()
                return
            chunk, fut = self.chunks[i], futures[i]
            error = _failure(fut)
            if error is None:
                ok.append(fut.result())
                yield "chunk", chunk_predictions(self.info, [chunk], [fut.result()])[0]
            else:
                yield "chunk", {"index": chunk.index, "start": chunk.start, "end": chunk.end, **error}
        yield "done", self.summary(ok)

    def summary(self, ok: Sequence[ItemResult]) -> dict[str, Any]:
        return {
            "model": self.info.name,
            "task": self.info.task,
            "chunks": len(self.chunks),
            "successful": len(ok),
            "failed": len(self.chunks) - len(ok),
            "aggregate": aggregate(self.info, ok) if ok else None,
        }


def _put_index(queue: asyncio.Queue[int], index: int, _: object) -> None:
    queue.put_nowait(index)


def _failure(fut: asyncio.Future[ItemResult]) -> dict[str, Any] | None:
    """The one JSON error shape for a failed chunk; None when it succeeded."""
    if fut.cancelled():
        return error_body("the chunk was cancelled", type_="server_error", code="cancelled")
    exc = fut.exception()
    if exc is None:
        return None
    if isinstance(exc, ConvoyError):
        return exc.body()
    log.error("chunk failed unexpectedly", exc_info=exc)
    return error_body("internal server error", type_="server_error", code="internal_error")


def sse_event(name: str, data: Any) -> bytes:
    return (
        b"event: "
        + name.encode()
        + b"\ndata: "
        + orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
        + b"\n\n"
    )


class EventStreamResponse(StreamingResponse):
    """A text/event-stream that watches for the client leaving, whatever the ASGI spec version.

    When the client disconnects, the stream stops at once and `on_close` runs (it runs however
    the stream ends), so the request's outstanding chunks are cancelled, not computed for nobody.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        on_close: Callable[[], None],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # no-cache and no proxy buffering: each event must reach the client as it is written.
        sse_headers = {"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})}
        super().__init__(content, status_code=status_code, headers=sse_headers)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = asyncio.create_task(self.stream_response(send))
        watcher = asyncio.create_task(wait_for_disconnect(receive))
        try:
            await asyncio.wait({stream, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            stream.cancel()
            self._on_close()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await stream  # a send to a gone client raises OSError: nothing to answer then
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


async def sse_frames(progress: ChunkProgress) -> AsyncIterator[bytes]:
    async for name, data in progress.events():
        yield sse_event(name, data)
