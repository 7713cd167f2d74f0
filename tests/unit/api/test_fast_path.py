"""FastPath: valid JSON bodies of the hot routes go straight to their handler; everything else
reaches the full stack with its body intact, and errors keep the one error shape."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from server.api.fast_path import FastPath
from server.errors import InvalidInput
from server.metrics import Metrics
from server.security import Authenticator

LIMIT = 64


class Body(BaseModel):
    text: str
    n: int = 1


class FullStack:
    """What stands behind the fast path: records what reached it and the body it could read."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts, more = [], True
        while more:
            message = await receive()
            parts.append(message.get("body", b""))
            more = message.get("more_body", False)
        self.bodies.append(b"".join(parts))
        await Response(b"full stack", status_code=299)(scope, receive, send)


class Runtime:
    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth
        self.metrics = Metrics(32)
        self.in_flight = 0

    def request_started(self) -> None:
        self.in_flight += 1

    def request_finished(self) -> None:
        self.in_flight -= 1


@pytest.fixture
def handled() -> list[Body]:
    return []


@pytest.fixture
def fast(handled: list[Body]) -> FastPath:
    async def handler(*, body: Body, request: Request, runtime: Any) -> Response:
        if body.text == "refuse":
            raise InvalidInput("refused", param="text")
        if body.text == "crash":
            raise ZeroDivisionError
        handled.append(body)
        return JSONResponse({"echo": body.text, "n": body.n, "id": request.scope["state"]["request_id"]})

    return FastPath({"/fast": (Body, handler)}, max_body_bytes=LIMIT, cors=True, json_access_log=False)


def make_scope(path: str, headers: dict[bytes, bytes] | None = None) -> Scope:
    base = {b"content-type": b"application/json", **(headers or {})}
    return {"type": "http", "method": "POST", "path": path, "headers": [(k, v) for k, v in base.items() if v]}


async def call(
    fast: FastPath, scope: Scope, body: bytes, runtime: Runtime | None = None
) -> tuple[int, bytes, dict[bytes, bytes], FullStack]:
    runtime = runtime or Runtime(Authenticator())
    app = SimpleNamespace(state=SimpleNamespace(runtime=runtime))
    chunks = [body[:5], body[5:]]  # a body in two messages, as a slow client sends it
    sent: list[Message] = []

    async def receive() -> Message:
        if chunks:
            part = chunks.pop(0)
            return {"type": "http.request", "body": part, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    rest = FullStack()
    route = fast.route_for(scope)
    if route is None:
        await rest(scope, receive, send)
    else:
        await fast.handle(app, route, scope, receive, send, rest)  # type: ignore[arg-type]
    assert runtime.in_flight == 0
    headers = dict(sent[0]["headers"])
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), headers, rest


async def test_a_valid_body_goes_straight_to_the_handler(fast: FastPath, handled: list[Body]) -> None:
    status, body, headers, rest = await call(fast, make_scope("/fast"), b'{"text": "hi", "n": 3}')
    assert status == 200 and body.startswith(b'{"echo":"hi","n":3,"id":"')
    assert headers[b"x-request-id"].decode() in body.decode()
    assert handled == [Body(text="hi", n=3)] and rest.bodies == []


async def test_the_request_id_a_client_sends_is_kept(fast: FastPath) -> None:
    scope = make_scope("/fast", {b"x-request-id": b"abc-123"})
    _, _, headers, _ = await call(fast, scope, b'{"text": "hi"}')
    assert headers[b"x-request-id"] == b"abc-123"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/other", {}),  # not a hot route
        ("/fast", {b"content-type": b"text/plain"}),  # FastAPI does not read it as JSON
        ("/fast", {b"content-length": b"65"}),  # declared over the limit: the full stack's 413
        ("/fast", {b"origin": b"https://example.org"}),  # CORS is on: the CORS middleware decides
    ],
)
async def test_requests_it_does_not_take_go_to_the_full_stack(
    fast: FastPath, handled: list[Body], path: str, headers: dict[bytes, bytes]
) -> None:
    status, answer, _, rest = await call(fast, make_scope(path, headers), b'{"text": "hi"}')
    assert (status, answer) == (299, b"full stack")
    assert rest.bodies == [b'{"text": "hi"}'] and handled == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"text": 1}',  # does not validate: FastAPI's 422
        b'{"text": NaN}',  # orjson refuses; json.loads may not
        b'{"text": "hi", "n": 99999999999999999999999}',  # beyond orjson's 64 bits
        b'{"text": ',  # broken JSON: FastAPI's error, with its position
    ],
)
async def test_bodies_it_cannot_answer_exactly_reach_the_full_stack_replayed(
    fast: FastPath, handled: list[Body], body: bytes
) -> None:
    status, answer, _, rest = await call(fast, make_scope("/fast"), body)
    assert (status, answer) == (299, b"full stack")
    assert rest.bodies == [body] and handled == []


async def test_json_subtypes_and_no_content_type_are_json_as_for_fastapi(
    fast: FastPath, handled: list[Body]
) -> None:
    for content_type in (b"application/vnd.api+json", b"application/json; charset=utf-8", b""):
        status, _, _, _ = await call(
            fast, make_scope("/fast", {b"content-type": content_type}), b'{"text": "x"}'
        )
        assert status == 200
    assert len(handled) == 3


async def test_a_chunked_body_past_the_limit_is_413(fast: FastPath, handled: list[Body]) -> None:
    status, body, _, _ = await call(fast, make_scope("/fast"), b'{"text": "' + b"x" * LIMIT + b'"}')
    assert status == 413 and b"payload_too_large" in body and handled == []


async def test_errors_keep_the_one_error_shape(fast: FastPath) -> None:
    status, body, _, _ = await call(fast, make_scope("/fast"), b'{"text": "refuse"}')
    assert status == 400 and b'"code":"invalid_input"' in body and b'"param":"text"' in body
    status, body, headers, _ = await call(fast, make_scope("/fast"), b'{"text": "crash"}')
    assert status == 500 and b'"code":"internal_error"' in body and b"ZeroDivision" not in body
    assert headers[b"connection"] == b"close"


async def test_credentials_are_checked_before_the_handler(fast: FastPath, handled: list[Body]) -> None:
    runtime = Runtime(Authenticator(api_keys=["secret"]))
    status, body, headers, _ = await call(fast, make_scope("/fast"), b'{"text": "hi"}', runtime)
    assert status == 401 and b"invalid_api_key" in body and handled == []
    assert headers[b"www-authenticate"].startswith(b"Bearer")
    scope = make_scope("/fast", {b"authorization": b"Bearer secret"})
    status, _, _, _ = await call(fast, scope, b'{"text": "hi"}', runtime)
    assert status == 200


async def test_metrics_count_the_answers_it_gives(fast: FastPath) -> None:
    runtime = Runtime(Authenticator())
    await call(fast, make_scope("/fast"), b'{"text": "hi"}', runtime)
    await call(fast, make_scope("/fast"), b'{"text": "refuse"}', runtime)
    samples = {
        (s.labels.get("route"), s.labels.get("status")): s.value
        for family in runtime.metrics.registry.collect()
        for s in family.samples
        if s.name == "convoy_requests_total"
    }
    assert samples == {("/fast", "200"): 1.0, ("/fast", "400"): 1.0}
