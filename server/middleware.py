"""Pure-ASGI middleware: X-Request-ID on every response, per-route metrics, in-flight count."""

from __future__ import annotations

import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.runtime import Runtime

_MAX_ID_LEN = 128


class RequestContextMiddleware:
    """Cheaper than BaseHTTPMiddleware: no extra task, no body buffering."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
            if runtime is not None:
                runtime.request_finished()
                route = scope.get("route")
                label = getattr(route, "path", "unmatched")
                runtime.metrics.request_latency.labels(label).observe(time.perf_counter() - started)
                runtime.metrics.requests.labels(label, str(status)).inc()


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1").strip()
            if text and len(text) <= _MAX_ID_LEN and text.isprintable():
                return text
    return None
