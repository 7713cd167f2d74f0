"""/stream and /ws honour the request deadline: past it, an error event and the queued chunks dropped."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.integration.remote.test_stream import sentences
from tests.integration.remote.test_ws import recv, ws_url
from tests.support.fake_model import FakeModel
from tests.support.live_server import LiveServer
from tests.support.metrics import expect_increase, metric_value
from tests.support.sse import sse_events

pytestmark = pytest.mark.integration

# max_batch_size 1 on the gated server: chunk 0 answers, chunk 1 holds the model at the gate
# past the deadline, the four after it wait in the queue.
TEXT = sentences("fast", "gate", *["more"] * 4)
DEADLINE = {"X-Request-Timeout": "1"}


async def test_stream_past_its_deadline_ends_with_an_error_event(
    gated_server: LiveServer, gated_model: FakeModel
) -> None:
    before = metric_value(gated_server.url, "convoy_cancelled_total", model="gated")
    gated_model.gate.clear()
    try:
        async with (
            httpx.AsyncClient(base_url=gated_server.url, timeout=30) as client,
            client.stream("POST", "/stream", json={"text": TEXT, "chunk_size": 12}, headers=DEADLINE) as r,
        ):
            assert r.status_code == 200
            events = [e async for e in sse_events(r)]
    finally:
        gated_model.gate.set()
    assert [name for name, _ in events] == ["chunk", "error"]
    assert events[0][1]["index"] == 0
    error = events[1][1]["error"]
    assert error["code"] == "deadline_exceeded" and "1 s deadline" in error["message"]
    await expect_increase(gated_server.url, "convoy_cancelled_total", before, 4, model="gated")
    assert [t for t in gated_model.seen if t.startswith("more")] == []


async def test_ws_message_past_its_deadline_gets_an_error_event(
    gated_server: LiveServer, gated_model: FakeModel
) -> None:
    before = metric_value(gated_server.url, "convoy_cancelled_total", model="gated")
    gated_model.gate.clear()
    try:
        async with connect(ws_url(gated_server), additional_headers=DEADLINE) as ws:
            await ws.send(json.dumps({"id": "late", "text": TEXT, "chunk_size": 12}))
            events = [await recv(ws) for _ in range(4)]
            # The connection stays open after a late message: the next one is read and answered.
            await ws.send("not json")
            after = await recv(ws)
    finally:
        gated_model.gate.set()
    assert [e["event"] for e in events] == ["accepted", "chunked", "chunk", "error"]
    assert all(e["id"] == "late" for e in events)
    assert events[3]["error"]["code"] == "deadline_exceeded"
    assert after["event"] == "error" and after["error"]["code"] == "validation_error"
    await expect_increase(gated_server.url, "convoy_cancelled_total", before, 4, model="gated")
    assert [t for t in gated_model.seen if t.startswith("more")] == []


async def test_ws_handshake_with_a_bad_deadline_is_refused(gated_server: LiveServer) -> None:
    with pytest.raises(Exception, match="403"):
        async with connect(ws_url(gated_server), additional_headers={"X-Request-Timeout": "never"}):
            pass
