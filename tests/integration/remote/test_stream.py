"""POST /stream read by a real HTTP client: per-chunk events as they complete, disconnect cancels."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.remote.conftest import REMOTE_CONCURRENCY
from tests.support.fake_model import FakeModel
from tests.support.live_server import LiveServer
from tests.support.metrics import expect_increase, metric_value, wait_until
from tests.support.sse import sse_events
from tests.support.upstreams import Upstream

pytestmark = pytest.mark.integration


def sentences(*words: str) -> str:
    """One short sentence per word; with chunk_size 12 each sentence is one chunk."""
    return " ".join(f"{w} {i:02d}." for i, w in enumerate(words))


async def leave_after_first_event(server: LiveServer, text: str) -> None:
    """Start a /stream, read its first event (chunk 0), then close the connection mid-stream."""
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        client.stream("POST", "/stream", json={"text": text, "chunk_size": 12}) as r,
    ):
        name, data = await anext(sse_events(r))
    assert (name, data["index"]) == ("chunk", 0)


async def test_local_model_streams_every_chunk_then_done(minilm_server: LiveServer) -> None:
    text = "Convoy batches requests. It serves encoders. Streams come chunk by chunk."
    async with (
        httpx.AsyncClient(base_url=minilm_server.url, timeout=30) as client,
        client.stream("POST", "/stream", json={"text": text, "chunk_size": 30}) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [e async for e in sse_events(r)]
    names = [name for name, _ in events]
    assert names == ["chunk"] * 3 + ["done"]
    chunks = sorted((data for _, data in events[:-1]), key=lambda d: d["index"])
    assert [c["index"] for c in chunks] == [0, 1, 2]
    for c in chunks:
        assert text[c["start"] : c["end"]] and len(c["embedding"]) == 384 and c["tokens"] > 0
    done = events[-1][1]
    assert done["chunks"] == 3 and (done["successful"], done["failed"]) == (3, 0)
    assert done["model"] == "all-MiniLM-L6-v2" and len(done["aggregate"]["embedding"]) == 384


async def test_bad_body_is_a_plain_422_not_a_stream(minilm_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=minilm_server.url, timeout=30) as client:
        r = await client.post("/stream", json={"text": "", "chunk_size": 10})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"


async def test_first_event_arrives_before_the_slowest_chunk_finishes(
    remote_server: LiveServer, upstreams: list[Upstream]
) -> None:
    rec = upstreams[0].rec
    rec.gate.clear()  # the "gate" chunk cannot finish until this test opens the gate
    text = sentences("fast", "gate", "fail500")
    try:
        async with (
            httpx.AsyncClient(base_url=remote_server.url, timeout=10) as client,
            client.stream("POST", "/stream", json={"text": text, "chunk_size": 12}) as r,
        ):
            assert r.status_code == 200
            events = sse_events(r)
            seen: list[tuple[str, Any]] = []
            # The fast chunk and the failing one arrive, in either order, while the gated chunk
            # is still held at its upstream (buffered output would stall here until it timed out).
            seen.append(await anext(events))
            seen.append(await anext(events))
            rec.gate.set()
            seen += [e async for e in events]
    finally:
        rec.gate.set()
    by_index = {data["index"]: data for name, data in seen if name == "chunk"}
    assert [name for name, _ in seen] == ["chunk", "chunk", "chunk", "done"]
    assert seen[2][1]["index"] == 1  # the gated chunk came last
    assert by_index[0]["result"] == {"echo": "fast 00.", "length": 8}
    assert by_index[1]["result"] == {"echo": "gate 01.", "length": 8}
    assert by_index[2]["error"]["code"] == "upstream_failed" and "result" not in by_index[2]
    assert (by_index[2]["start"], by_index[2]["end"]) == (18, 29)
    done = seen[-1][1]
    assert (done["chunks"], done["successful"], done["failed"]) == (3, 2, 1)
    assert done["task"] == "json" and done["aggregate"] == {}


async def test_disconnect_cancels_queued_remote_chunks(
    remote_server: LiveServer, upstreams: list[Upstream]
) -> None:
    rec = upstreams[0].rec
    # Chunk 0 answers; the rest hang, so REMOTE_CONCURRENCY are in flight and the others queue.
    text = sentences("fast", *["hang"] * 9)
    in_flight = REMOTE_CONCURRENCY
    queued = 10 - 1 - in_flight
    before = metric_value(remote_server.url, "convoy_cancelled_total", model="echo")
    await leave_after_first_event(remote_server, text)
    await expect_increase(remote_server.url, "convoy_cancelled_total", before, queued, model="echo")
    # The upstream never saw the queued chunks: only the fast one and those already in flight.
    assert rec.count("/script") <= 1 + in_flight
    assert all("hang" not in t or int(t.split()[1][:2]) <= in_flight for t in rec.texts["/script"])


async def test_disconnect_cancels_queued_local_chunks(
    gated_server: LiveServer, gated_model: FakeModel
) -> None:
    # max_batch_size 1: chunk 0 answers, chunk 1 holds the model at the gate, the rest queue.
    text = sentences("fast", "gate", *["more"] * 8)

    before_cancelled = metric_value(gated_server.url, "convoy_cancelled_total", model="gated")
    before_done = metric_value(gated_server.url, "convoy_requests_total", route="/stream", status="200")
    gated_model.gate.clear()
    try:
        await leave_after_first_event(gated_server, text)
        # The stream's end is recorded after its chunks were cancelled: only then free the model.
        await wait_until(
            lambda: (
                metric_value(gated_server.url, "convoy_requests_total", route="/stream", status="200")
                > before_done
            ),
            "the server to see the disconnect",
        )
    finally:
        gated_model.gate.set()
    await expect_increase(gated_server.url, "convoy_cancelled_total", before_cancelled, 8, model="gated")
    computed = [t for t in gated_model.seen if t.startswith("more")]
    assert computed == [], f"cancelled chunks reached the model: {computed}"
