"""Pure-ASGI middleware: X-Request-ID on every response, and per-route latency metrics."""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.metrics import Metrics

_MAX_ID_LEN = 128


class RequestContextMiddleware:
    """Cheaper than BaseHTTPMiddleware: no extra task, no body buffering."""

    def __init__(self, app: ASGIApp, metrics_of: Any) -> None:
        self.app = app
        self._metrics_of = metrics_of  # app -> Metrics; looked up per request (made in lifespan)

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

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            metrics: Metrics | None = self._metrics_of(scope)
            if metrics is not None:
                route = scope.get("route")
                label = getattr(route, "path", "unmatched")
                metrics.request_latency.labels(label).observe(time.perf_counter() - started)
                metrics.requests.labels(label, str(status)).inc()


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1").strip()
            if text and len(text) <= _MAX_ID_LEN and text.isprintable():
                return text
    return None
