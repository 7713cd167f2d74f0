"""WebSocket /ws with a real client: progress order, many messages, malformed input, disconnect."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.support.fake_model import FakeModel
from tests.support.live_server import LiveServer
from tests.support.metrics import expect_increase, metric_value, wait_until

pytestmark = pytest.mark.integration


def ws_url(server: LiveServer) -> str:
    return server.url.replace("http://", "ws://") + "/ws"


async def recv(ws: ClientConnection) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await ws.recv())
    return event


async def until_done(ws: ClientConnection, ids: set[Any]) -> dict[Any, list[dict[str, Any]]]:
    """Every event, grouped by message id, until each of `ids` is done (or failed)."""
    events: dict[Any, list[dict[str, Any]]] = {i: [] for i in ids}
    pending = set(ids)
    while pending:
        event = await recv(ws)
        events[event["id"]].append(event)
        if event["event"] in ("done", "error"):
            pending.discard(event["id"])
    return events


async def test_progress_events_come_in_order(minilm_server: LiveServer) -> None:
    text = "Convoy batches requests. It serves encoders. Sockets get progress."
    async with connect(ws_url(minilm_server)) as ws:
        await ws.send(json.dumps({"text": text, "chunk_size": 30, "id": "a"}))
        events = (await until_done(ws, {"a"}))["a"]
    names = [e["event"] for e in events]
    assert names == ["accepted", "chunked", "chunk", "chunk", "chunk", "done"]
    assert events[1]["chunks"] == 3
    assert sorted(e["index"] for e in events[2:5]) == [0, 1, 2]
    assert all(len(e["embedding"]) == 384 for e in events[2:5])
    done = events[-1]
    assert (done["chunks"], done["successful"], done["failed"]) == (3, 3, 0)
    assert len(done["aggregate"]["embedding"]) == 384


async def test_many_messages_on_one_connection_and_malformed_ones(minilm_server: LiveServer) -> None:
    async with connect(ws_url(minilm_server)) as ws:
        await ws.send("this is not JSON")
        bad = await recv(ws)
        assert bad["event"] == "error" and bad["id"] is None
        assert bad["error"]["code"] == "validation_error"

        await ws.send(json.dumps({"id": 7, "text": "", "chunk_size": 10}))
        bad = await recv(ws)
        assert (bad["event"], bad["id"], bad["error"]["param"]) == ("error", 7, "text")

        await ws.send(json.dumps({"id": 8, "text": "Unknown model here.", "model": "nope"}))
        # Sent back to back: both run; each one's events keep their own order.
        await ws.send(json.dumps({"id": 1, "text": "First message. It has two chunks.", "chunk_size": 20}))
        await ws.send(json.dumps({"id": 2, "text": "Second one."}))
        events = await until_done(ws, {1, 2, 8})
    assert [e["event"] for e in events[8]] == ["accepted", "error"]
    assert events[8][-1]["error"]["code"] == "not_found"
    assert [e["event"] for e in events[1]] == ["accepted", "chunked", "chunk", "chunk", "done"]
    assert [e["event"] for e in events[2]] == ["accepted", "chunked", "chunk", "done"]


async def test_messages_without_id_are_numbered(minilm_server: LiveServer) -> None:
    async with connect(ws_url(minilm_server)) as ws:
        await ws.send(json.dumps({"text": "Numbered by the server."}))
        events = await until_done(ws, {1})
    assert events[1][-1]["event"] == "done"


async def test_disconnect_cancels_outstanding_work(gated_server: LiveServer, gated_model: FakeModel) -> None:
    text = " ".join(f"{w} {i:02d}." for i, w in enumerate(["fast", "gate", *["more"] * 8]))
    before = metric_value(gated_server.url, "convoy_cancelled_total", model="gated")
    gated_model.gate.clear()
    try:
        async with connect(ws_url(gated_server)) as ws:
            await ws.send(json.dumps({"text": text, "chunk_size": 12}))
            assert [(await recv(ws))["event"] for _ in range(3)] == ["accepted", "chunked", "chunk"]
        # The session ends (gauge back to 0) only after it cancelled its work: then free the model.
        await wait_until(
            lambda: metric_value(gated_server.url, "convoy_websocket_connections") == 0,
            "the server to see the disconnect",
        )
    finally:
        gated_model.gate.set()
    await expect_increase(gated_server.url, "convoy_cancelled_total", before, 8, model="gated")
    assert [t for t in gated_model.seen if t.startswith("more")] == []


async def test_remote_backend_over_ws_reports_failed_chunks(remote_server: LiveServer) -> None:
    text = "fast 00. fail500 01."
    async with connect(ws_url(remote_server)) as ws:
        await ws.send(json.dumps({"id": "r", "text": text, "chunk_size": 12}))
        events = (await until_done(ws, {"r"}))["r"]
    chunks = {e["index"]: e for e in events if e["event"] == "chunk"}
    assert chunks[0]["result"] == {"echo": "fast 00.", "length": 8}
    assert chunks[1]["error"]["code"] == "upstream_failed"
    assert events[-1]["event"] == "done" and events[-1]["failed"] == 1
