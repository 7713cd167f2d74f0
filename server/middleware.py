"""Pure-ASGI middleware: X-Request-ID, per-route metrics, in-flight count, JSON access log."""

from __future__ import annotations

import logging
import time
import uuid

import orjson
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.runtime import Runtime

_MAX_ID_LEN = 128

access_log = logging.getLogger("convoy.access")


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
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
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
                runtime.metrics.request_latency.labels(route).observe(elapsed)
                runtime.metrics.requests.labels(route, str(status)).inc()
            if self._json_access_log:
                _log_json(scope, request_id, route, status, elapsed)


def _log_json(scope: Scope, request_id: str, route: str, status: int, elapsed: float) -> None:
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


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1").strip()
            if text and len(text) <= _MAX_ID_LEN and text.isprintable():
                return text
    return None
