"""--backend remote: plain upstreams and OpenAI-style embeddings upstreams behind /predict and /stream."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from server.app import create_app
from tests.support.live_server import LiveServer, live_server
from tests.support.metrics import metric_value, wait_until
from tests.support.settings import make_settings
from tests.support.sse import sse_events
from tests.support.upstreams import Upstream, embed_vector

pytestmark = pytest.mark.integration


async def test_openai_upstream_gets_concurrent_requests_as_one_batch(
    openai_server: LiveServer, upstreams: list[Upstream]
) -> None:
    rec = upstreams[1].rec
    texts = ["the first request"] + [f"concurrent request number {i}" for i in range(7)]
    rec.embed_gate.clear()  # hold the first upstream call so the others queue behind it
    try:
        async with httpx.AsyncClient(base_url=openai_server.url, timeout=30) as client:
            first = asyncio.create_task(client.post("/predict", json={"text": texts[0]}))
            await wait_until(lambda: rec.count("/v1/embeddings") == 1, "the first upstream call")
            rest = [asyncio.create_task(client.post("/predict", json={"text": t})) for t in texts[1:]]
            await wait_until(
                lambda: metric_value(openai_server.url, "convoy_queue_depth", model="fake-embed") == 7,
                "seven chunks queued",
            )
            rec.embed_gate.set()
            responses = await asyncio.gather(first, *rest)
    finally:
        rec.embed_gate.set()
    assert rec.embed_batches == [1, 7]  # seven requests, one upstream call
    for r, text in zip(responses, texts, strict=True):
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["model"], body["task"], body["chunks"]) == ("fake-embed", "embed", 1)
        assert body["predictions"][0]["embedding"] == embed_vector(text)
        assert body["predictions"][0]["tokens"] == len(text.split())


async def test_openai_upstream_that_is_down_fails_the_batch_without_bisecting(
    upstreams: list[Upstream],
) -> None:
    rec = upstreams[2].rec
    settings = make_settings(
        backend="remote",
        remote_format="openai",
        remote_url=[f"{upstreams[2].url}/broken/v1/"],
        remote_backoff_s=0.01,
    )
    with live_server(create_app(settings)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            r = await client.post("/predict", json={"text": "one. two. six.", "chunk_size": 5})
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "upstream_failed"
    assert rec.embed_batches == [3, 3, 3]  # one batch, tried three times, never split up


async def test_openai_upstream_refusing_one_input_fails_only_that_chunk(upstreams: list[Upstream]) -> None:
    settings = make_settings(
        backend="remote", remote_format="openai", remote_url=[f"{upstreams[2].url}/picky/v1"]
    )
    text = "good 00. bad 01. good 02."
    with live_server(create_app(settings)) as server:
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=30) as client,
            client.stream("POST", "/stream", json={"text": text, "chunk_size": 9}) as r,
        ):
            events = [e async for e in sse_events(r)]
    chunks = {data["index"]: data for name, data in events if name == "chunk"}
    assert chunks[1]["error"]["code"] == "inference_failed"
    assert chunks[0]["embedding"] == embed_vector("good 00.")
    assert chunks[2]["embedding"] == embed_vector("good 02.")
    assert events[-1][1]["failed"] == 1


def test_plain_upstream_results_come_back_per_chunk_on_predict(
    remote_server: LiveServer, upstreams: list[Upstream]
) -> None:
    text = "fast 00. slow 01."
    r = httpx.post(f"{remote_server.url}/predict", json={"text": text, "chunk_size": 9}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"], body["task"], body["chunks"]) == ("echo", "json", 2)
    assert [p["result"] for p in body["predictions"]] == [
        {"echo": "fast 00.", "length": 8},
        {"echo": "slow 01.", "length": 8},
    ]
    assert all("embedding" not in p and p["tokens"] == 2 for p in body["predictions"])
    assert body["aggregate"] == {}
    assert upstreams[0].rec.count("/script") == 2
    models = httpx.get(f"{remote_server.url}/models", timeout=10).json()["models"]
    assert [(m["name"], m["task"], m["device"]) for m in models] == [("echo", "json", "remote")]


def test_plain_upstream_failure_fails_predict_with_502(remote_server: LiveServer) -> None:
    r = httpx.post(
        f"{remote_server.url}/predict", json={"text": "fast 00. fail500 01.", "chunk_size": 12}, timeout=10
    )
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert error["code"] == "upstream_failed" and "HTTP 500" in error["message"]
    assert "127.0.0.1" not in error["message"]  # operator upstreams stay private
