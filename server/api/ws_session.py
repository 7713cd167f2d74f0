"""WsSession: one /ws connection, many messages, progress events for each, cancel on disconnect."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.websockets import WebSocket

from server.api.error_handlers import validation_error_body
from server.api.inputs import chunk_for_model, refuse_rerank, resolve_prompt, submit
from server.api.schemas import WsRequest
from server.api.streaming import ChunkProgress
from server.errors import ConvoyError, error_body
from server.runtime import Runtime

log = logging.getLogger("convoy.ws")

MessageId = str | int


class WsSession:
    """Reads messages; each valid one runs as its own task and its events carry its `id`.

    Events: `accepted`, `chunked` (`chunks`), one `chunk` per result as it completes, `done`
    (totals and aggregate), or `error` (the one error shape). A malformed message gets an
    `error` event and the connection stays open. Each message has the request deadline
    (`timeout_s`, from the handshake's X-Request-Timeout or the server default), counted from
    when its chunks are queued: past it, its queued chunks are cancelled and it ends with an `error` event
    (`deadline_exceeded`). Only `run()` receives; sends are serialised so events of concurrent
    messages never interleave mid-frame. On disconnect every outstanding message is
    cancelled, and with it its queued chunks.
    """

    def __init__(self, websocket: WebSocket, runtime: Runtime, timeout_s: float) -> None:
        self._ws = websocket
        self._runtime = runtime
        self._timeout_s = timeout_s
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._received = 0

    async def run(self) -> None:
        self._runtime.metrics.websockets.inc()
        try:
            while True:
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                self._received += 1
                raw = message.get("text")
                if raw is None:
                    raw = message.get("bytes") or b""
                try:
                    request = WsRequest.model_validate_json(raw)
                except ValidationError as exc:
                    await self._send("error", _guess_id(raw), validation_error_body(exc.errors()))
                    continue
                msg_id = request.id if request.id is not None else self._received
                task = asyncio.create_task(self._handle(msg_id, request))
                self._tasks.add(task)
                task.add_done_callback(self._reap)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._runtime.metrics.websockets.dec()

    async def _handle(self, msg_id: MessageId, request: WsRequest) -> None:
        progress: ChunkProgress | None = None
        try:
            await self._send("accepted", msg_id)
            backend = self._runtime.backend(request.model)
            refuse_rerank(backend.info, "/ws")
            prompt = resolve_prompt(backend.info, request.prompt_name)
            settings = self._runtime.settings
            chunked = await chunk_for_model(
                request.text, request.chunk_size, settings, backend, prompt=prompt
            )
            await self._send("chunked", msg_id, {"chunks": len(chunked.chunks)})
            pending = submit(backend, chunked.texts, self._timeout_s, prompt=prompt, encoded=chunked.encoded)
            progress = ChunkProgress(backend.info, chunked.chunks, pending)
            async for name, data in progress.events():
                await self._send(name, msg_id, data)
        except ConvoyError as exc:
            await self._send("error", msg_id, exc.body())
        except Exception:
            log.exception("/ws message %r failed", msg_id)
            await self._send(
                "error",
                msg_id,
                error_body("internal server error", type_="server_error", code="internal_error"),
            )
        finally:
            if progress is not None:
                progress.cancel()

    async def _send(self, event: str, msg_id: MessageId | None, data: dict[str, Any] | None = None) -> None:
        frame = orjson.dumps(
            {"event": event, "id": msg_id, **(data or {})}, option=orjson.OPT_SERIALIZE_NUMPY
        ).decode()
        async with self._send_lock:
            await self._ws.send_text(frame)

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Sending to a client that just left fails; nothing is owed to it any more.
            log.debug("/ws message task ended with %r", task.exception())


def _guess_id(raw: str | bytes) -> MessageId | None:
    """The `id` of a malformed message, when it is at least a JSON object with one."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    msg_id = value.get("id") if isinstance(value, dict) else None
    return msg_id if isinstance(msg_id, str | int) and not isinstance(msg_id, bool) else None
