"""Middleware: request context (X-Request-ID, metrics, in-flight count, JSON access log), body limit, CORS."""

from __future__ import annotations

import logging
import time
from random import getrandbits
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.responses import FastJSONResponse
from server.config import Settings
from server.errors import PayloadTooLarge, error_body
from server.runtime import Runtime

_MAX_ID_LEN = 128

access_log = logging.getLogger("convoy.access")

# Headers a browser page may read from a response (timings for clients like `convoy bench`).
EXPOSED_HEADERS = ("X-Request-ID", "X-Queue-Time", "X-Inference-Time", "X-Total-Time", "Retry-After")


class RequestContextMiddleware:
    """Cheaper than BaseHTTPMiddleware: no extra task, no body buffering."""

    def __init__(self, app: ASGIApp, json_access_log: bool = False) -> None:
        self.app = app
        # Off by default: uvicorn writes the text access log, and this costs nothing per request.
        self._json_access_log = json_access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = incoming_request_id(scope) or new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        # The runtime is made in the lifespan, after the middleware stack is built.
        runtime: Runtime | None = getattr(scope["app"].state, "runtime", None)
        if runtime is not None:
            runtime.request_started()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            if runtime is not None:
                runtime.request_finished()
                runtime.metrics.observe_request(route, status, elapsed)
            if self._json_access_log:
                log_access(scope, request_id, route, status, elapsed)


def log_access(scope: Scope, request_id: str, route: str, status: int, elapsed: float) -> None:
    """One JSON object a line, for log shippers; `model`/`chunks` come from the inference route."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    state = scope.get("state", {})
    client = scope.get("client")
    record = {
        "ts": round(time.time(), 3),
        "request_id": request_id,
        "method": scope.get("method"),
        "path": scope.get("path"),
        "route": route,
        "status": status,
        "latency_ms": round(elapsed * 1000, 3),
        "client": client[0] if client else None,
        "model": state.get("model"),
        "chunks": state.get("chunks"),
    }
    access_log.info(orjson.dumps(record).decode())


def new_request_id() -> str:
    """128 random bits in hex. A request id needs uniqueness, not secrecy: no os.urandom syscall
    (which releases the GIL mid-request, to a model thread that may keep it for milliseconds)."""
    return f"{getrandbits(128):032x}"


def header_value(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower case), as starlette's `Headers.get` gives it.

    A scan of the raw list: on the hot path `request.headers.get` builds a Headers object and,
    for a header that is absent (as X-Request-Timeout and Authorization mostly are), raises and
    catches a KeyError, several times the cost.
    """
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def incoming_request_id(scope: Scope) -> str | None:
    raw = header_value(scope, b"x-request-id")
    if raw is None:
        return None
    text = raw.strip()
    return text if text and len(text) <= _MAX_ID_LEN and text.isprintable() else None


# ---- body limit ------------------------------------------------------------------------------
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
                raise PayloadTooLarge(body_limit_message(limit))
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise PayloadTooLarge(body_limit_message(limit))
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


def body_limit_message(limit: int) -> str:
    return f"the request body is larger than {limit} bytes (max_body_bytes)"


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    exc = PayloadTooLarge(body_limit_message(limit))
    # No `Connection: close`: closing with the body still arriving makes the kernel reset the
    # connection, and the client may lose the 413 before reading it. The server discards the
    # rest of the body once the response is complete.
    await FastJSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())(scope, receive, send)


# ---- CORS ------------------------------------------------------------------------------------
class _CORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with refused preflights answered in the project's JSON error shape."""

    def preflight_response(self, request_headers: Any) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {
            k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")
        }
        reason = bytes(response.body).decode("utf-8", "replace")
        return FastJSONResponse(
            error_body(reason, type_="invalid_request_error", code="cors_refused"),
            status_code=response.status_code,
            headers=headers,
        )


def install_cors(app: FastAPI, settings: Settings) -> None:
    """Add CORS when origins are configured. Settings already refuse '*' with credentials."""
    if not settings.cors_allow_origins:
        return
    app.add_middleware(
        _CORSMiddleware,
        allow_origins=settings.cors_allow_origins,
        allow_methods=settings.cors_allow_methods,
        allow_headers=settings.cors_allow_headers,
        allow_credentials=settings.cors_allow_credentials,
        expose_headers=list(EXPOSED_HEADERS),
    )
