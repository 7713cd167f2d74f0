"""Request limits: the body-size middleware (413) and the per-request checks routes call."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.config import Settings
from server.errors import LimitExceeded, PayloadTooLarge
from server.responses import FastJSONResponse


class BodyLimitMiddleware:
    """Refuse bodies over `max_body_bytes` with 413, Content-Length or not.

    Pure ASGI: a declared Content-Length over the limit is refused before a byte is read; a
    chunked body is counted as it arrives and the first message past the limit stops it. The app
    may turn the interrupted read into some other answer (FastAPI makes it a 400); that answer is
    dropped and the 413 goes out instead, so the client always learns the real reason.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, receive, send, limit)
            return

        received = 0
        exceeded = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise PayloadTooLarge(_message(limit))
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise PayloadTooLarge(_message(limit))
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded and not response_started:
                return  # the app's answer to the interrupted read; the 413 replaces it
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            # Whatever the interrupted read became on its way out (maybe wrapped by a task group).
            if not exceeded or response_started:
                raise
        if exceeded and not response_started:
            await _refuse(scope, receive, send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # malformed; the server (h11/httptools) rejects it before us
    return None


def _message(limit: int) -> str:
    return f"the request body is larger than {limit} bytes (max_body_bytes)"


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    exc = PayloadTooLarge(_message(limit))
    # No `Connection: close`: closing with the body still arriving makes the kernel reset the
    # connection, and the client may lose the 413 before reading it. The server discards the
    # rest of the body once the response is complete.
    await FastJSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())(scope, receive, send)


# ---- per-request limits (routes call these before any work is queued) --------------------------
def check_chars(settings: Settings, chars: int, *, param: str) -> None:
    _check(chars, settings.max_request_chars, "characters of text", "max_request_chars", param)


def check_chunks(settings: Settings, chunks: int, *, param: str | None = None) -> None:
    _check(chunks, settings.max_request_chunks, "chunks", "max_request_chunks", param)


def check_inputs(settings: Settings, inputs: int, *, param: str) -> None:
    _check(inputs, settings.max_embedding_inputs, "inputs", "max_embedding_inputs", param)


def _check(count: int, limit: int, what: str, setting: str, param: str | None) -> None:
    if count > limit:
        raise LimitExceeded(
            f"the request has {count} {what}; at most {limit} are accepted ({setting})", param=param
        )
