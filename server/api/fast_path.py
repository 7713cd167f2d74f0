"""The fast path: the hot inference routes answered without the per-request machinery around them.

Behind a GPU the serving stack, not the model, limits a process, and most of a request's CPU
went to layers around Convoy's own code: Starlette's error middleware, FastAPI's routing,
dependency solving and body streaming, and one ASGI wrapper per Convoy middleware. `ConvoyApp`
(the FastAPI app Convoy builds) hands a hot request (POST to /v1/embeddings, /embed, /, /predict)
to `FastPath` before any of them: one function reads the body within the size limit, parses it
with orjson, validates it with the route's own pydantic model, checks the credentials and calls
the route's own handler, keeping what the middleware does (X-Request-ID, in-flight count,
metrics, the JSON access log). There is one implementation of each route, and the OpenAPI
document is FastAPI's.

It takes only what it can answer exactly as the full stack would. Anything else goes to the full
stack, with the body replayed when it was read: a body that is not `application/json`, JSON
that orjson refuses (FastAPI's json.loads has its own views on NaN and huge integers), a body
that does not validate, a browser request when CORS is on.
Those are answered as before, errors included.
"""

from __future__ import annotations

import email.message
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import orjson
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from server.api.error_handlers import convoy_error_response, unexpected_error_response
from server.api.middleware import (
    body_limit_message,
    header_value,
    incoming_request_id,
    log_access,
    new_request_id,
)
from server.errors import ConvoyError, PayloadTooLarge
from server.runtime import Runtime

Handler = Callable[..., Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class FastRoute:
    """A POST route the fast path answers: its path, its body model, and its handler (called with
    `body`, `request` and `runtime`). It stands where FastAPI's router would set its route object
    (scope["route"]), since the access log and metrics read its `path`."""

    path: str
    body: type[BaseModel]
    handler: Handler


class FastPath:
    def __init__(
        self,
        routes: Mapping[str, tuple[type[BaseModel], Handler]],
        *,
        max_body_bytes: int,
        cors: bool,
        json_access_log: bool,
    ) -> None:
        self._routes = {path: FastRoute(path, body, handler) for path, (body, handler) in routes.items()}
        self._max_body_bytes = max_body_bytes
        self._cors = cors
        self._json_access_log = json_access_log

    def route_for(self, scope: Scope) -> FastRoute | None:
        """The route when this request is one the fast path takes, judged by its headers."""
        route = self._routes.get(scope["path"])
        if route is None or scope["method"] != "POST":
            return None
        for name, value in scope["headers"]:
            if name == b"content-type" and not _json_content(value):
                return None
            if name == b"content-length" and not (value.isdigit() and int(value) <= self._max_body_bytes):
                return None
            if name == b"origin" and self._cors:
                return None
        return route

    async def handle(
        self, app: FastAPI, route: FastRoute, scope: Scope, receive: Receive, send: Send, slow: ASGIPath
    ) -> None:
        runtime: Runtime | None = getattr(app.state, "runtime", None)
        if runtime is None:  # still starting: the full stack says so in the usual way
            await slow(scope, receive, send)
            return
        started = time.perf_counter()
        refusal: Response | None = None
        parsed: BaseModel | None = None
        try:
            body = await _read_body(receive, self._max_body_bytes)
        except PayloadTooLarge as exc:  # a chunked body past the limit (a declared one never gets here)
            refusal = convoy_error_response(exc)
        else:
            try:
                parsed = route.body.model_validate(orjson.loads(body))
            except (orjson.JSONDecodeError, ValidationError, RecursionError):
                await slow(scope, _replay(body, receive), send)
                return
        request_id = incoming_request_id(scope) or new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        scope["route"] = route
        status = 500
        runtime.request_started()
        try:
            request = Request(scope, receive)
            try:
                if refusal is not None:
                    response = refusal
                else:
                    runtime.auth.authenticate(header_value(scope, b"authorization"))
                    response = await route.handler(body=parsed, request=request, runtime=runtime)
            except ConvoyError as exc:
                response = convoy_error_response(exc)
            except Exception as exc:
                response = unexpected_error_response(request, exc)
            response.raw_headers.append((b"x-request-id", request_id.encode("latin-1")))
            status = response.status_code
            await response(scope, receive, send)
        finally:
            elapsed = time.perf_counter() - started
            runtime.request_finished()
            runtime.metrics.observe_request(route.path, status, elapsed)
            if self._json_access_log:
                log_access(scope, request_id, route.path, status, elapsed)


ASGIPath = Callable[[Scope, Receive, Send], Awaitable[None]]


class ConvoyApp(FastAPI):
    """FastAPI, with the hot routes answered by `fast_path` first (None: every request goes the
    full way, e.g. when a deployment adds middleware the hot routes must pass through too)."""

    fast_path: FastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        route = fast.route_for(scope) if fast is not None and scope["type"] == "http" else None
        if route is None or fast is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await fast.handle(self, route, scope, receive, send, super().__call__)


def _json_content(value: bytes) -> bool:
    """The content types FastAPI parses as JSON (no content type at all is JSON too)."""
    if value == b"application/json":
        return True
    message = email.message.Message()
    message["content-type"] = value.decode("latin-1")
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole body; PayloadTooLarge past `limit` bytes (as the body-limit middleware says it)."""
    message = await receive()
    body: bytes = message.get("body", b"")
    parts, size = [body], len(body)
    while message.get("more_body", False):
        message = await receive()
        part = message.get("body", b"")
        parts.append(part)
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(body_limit_message(limit))
    if size > limit:
        raise PayloadTooLarge(body_limit_message(limit))
    return body if len(parts) == 1 else b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that yields the body already read, then the real channel (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
