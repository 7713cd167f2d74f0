"""POST /process against real loopback upstreams: isolation, shape, retries, allowlist, concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest

from tests.integration.remote.conftest import REMOTE_CONCURRENCY, REMOTE_TIMEOUT_S
from tests.support.live_server import LiveServer
from tests.support.metrics import expect_increase, metric_value, wait_until
from tests.support.upstreams import SLOW_S, Upstream

pytestmark = pytest.mark.integration

RESULT_KEYS = {"index", "url", "success", "result", "error", "latency_ms"}


def words(n: int, tag: str = "w") -> tuple[str, int]:
    """A text of n words of 8 characters; with chunk_size 8 every word is one chunk."""
    return " ".join(f"{tag}{i:03d}xxxx"[:8] for i in range(n)), 8


def post_process(server: LiveServer, text: str, chunk_size: int, urls: list[str]) -> httpx.Response:
    body = {"text": text, "chunk_size": chunk_size, "api_urls": urls}
    return httpx.post(f"{server.url}/process", json=body, timeout=30)


def test_each_chunk_gets_one_result_and_faults_stay_with_their_upstream(
    remote_server: LiveServer, upstreams: list[Upstream], refused: str
) -> None:
    u = upstreams[0]
    behaviours = ["fast", "fail500", "hang", "garbage", "slow", "bad400", "redirect"]
    kinds = [*behaviours, "refused"]
    urls = [f"{u.url}/{b}" for b in behaviours] + [f"{refused}/x"]
    text, size = words(2 * len(urls))
    started = time.monotonic()
    r = post_process(remote_server, text, size, urls)
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"total", "successful", "failed", "results"}
    assert body["total"] == len(body["results"]) == 16
    assert (body["successful"], body["failed"]) == (4, 12)
    chunks = text.split()
    for i, res in enumerate(body["results"]):
        assert set(res) == RESULT_KEYS
        assert res["index"] == i
        assert res["url"] == urls[i % len(urls)]  # round-robin, in chunk order
        assert isinstance(res["latency_ms"], float) and res["latency_ms"] >= 0
        kind = kinds[i % len(urls)]
        if kind in ("fast", "slow"):
            assert res["success"] is True and res["error"] is None
            assert res["result"] == {"echo": chunks[i], "length": 8}
        else:
            assert res["success"] is False and res["result"] is None
            assert isinstance(res["error"], str) and res["error"]
    errors = {kinds[i % len(urls)]: res["error"] for i, res in enumerate(body["results"])}
    assert "HTTP 500" in errors["fail500"] and "3 attempts" in errors["fail500"]
    assert f"within {REMOTE_TIMEOUT_S:g} s" in errors["hang"]
    assert "invalid JSON" in errors["garbage"]
    assert "HTTP 400" in errors["bad400"] and "attempts" not in errors["bad400"]
    assert "HTTP 307" in errors["redirect"] and "not followed" in errors["redirect"]
    assert "cannot reach" in errors["refused"]
    # What each upstream saw: retries only for 5xx, none for 4xx, timeouts or garbage.
    assert u.rec.count("/fail500") == 2 * 3
    assert u.rec.count("/bad400") == 2
    assert u.rec.count("/hang") == 2
    assert u.rec.count("/garbage") == 2
    assert u.rec.count("/redirect") == 2
    assert u.rec.count("/fast") == 2  # the redirect target was never fetched
    # The hanging upstream cost its own chunks their timeout, not the whole request more.
    assert elapsed < REMOTE_TIMEOUT_S * 3


def test_429_is_retried_after_retry_after(remote_server: LiveServer, upstreams: list[Upstream]) -> None:
    u = upstreams[1]
    text, size = words(2, tag="r")
    r = post_process(remote_server, text, size, [f"{u.url}/limited"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["successful"] == 2, body
    assert u.rec.count("/limited") == 4  # one 429 and one success per chunk
    for chunk in text.split():
        first, second = u.rec.arrivals[chunk]
        assert second - first >= 0.95  # Retry-After: 1 was honoured
    assert all(res["latency_ms"] >= 950 for res in body["results"])


def test_fifty_chunks_to_three_slow_upstreams_run_concurrently_within_limits(
    remote_server: LiveServer, upstreams: list[Upstream]
) -> None:
    text, size = words(50)
    urls = [f"{u.url}/slow" for u in upstreams]
    started = time.monotonic()
    r = post_process(remote_server, text, size, urls)
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert r.json()["successful"] == 50
    serial_s = 50 * SLOW_S
    assert elapsed < serial_s / 2, f"{elapsed:.2f}s is not well under the serial {serial_s:.1f}s"
    for u in upstreams:
        assert u.rec.count("/slow") in (16, 17)
        # Never more than the limit in flight, and the limit was actually reached.
        assert u.rec.peak["/slow"] == REMOTE_CONCURRENCY


def test_urls_outside_the_allowlist_get_403_and_no_traffic(
    remote_server: LiveServer, upstreams: list[Upstream], outside: Upstream
) -> None:
    allowed = upstreams[0]
    host_port = allowed.url.removeprefix("http://")
    sneaky = [
        f"{outside.url}/fast",
        f"http://{host_port}@{outside.url.removeprefix('http://')}/fast",  # userinfo trick
        f"{allowed.url.replace('127.0.0.1', 'localhost')}/fast",  # another name, not allowed
    ]
    text, size = words(4)
    for bad in sneaky:
        r = post_process(remote_server, text, size, [f"{allowed.url}/fast", bad])
        assert r.status_code == 403, (bad, r.text)
        error = r.json()["error"]
        assert error["code"] == "url_not_allowed" and error["param"] == "api_urls.1"
        assert "CONVOY_REMOTE_ALLOW" in error["message"]
    # Checked before any traffic: not even the allowed URL in the same request was called.
    assert allowed.rec.total() == 0
    assert outside.rec.total() == 0


def test_without_an_allowlist_every_url_is_refused(minilm_server: LiveServer, outside: Upstream) -> None:
    text, size = words(2)
    r = post_process(minilm_server, text, size, [f"{outside.url}/fast"])
    assert r.status_code == 403, r.text
    assert "CONVOY_REMOTE_ALLOW" in r.json()["error"]["message"]
    assert outside.rec.total() == 0


@pytest.mark.parametrize(
    "body",
    [
        {"text": "too short", "api_urls": ["http://127.0.0.1:1/x"]},
        {"text": "long enough text", "api_urls": []},
        {"text": "long enough text", "api_urls": ["ftp://127.0.0.1/x"]},
        {"text": "long enough text", "api_urls": ["not a url"]},
        {"text": "long enough text", "chunk_size": 0, "api_urls": ["http://127.0.0.1:1/x"]},
        {"text": "long enough text", "api_urls": ["http://127.0.0.1:1/x"], "extra": 1},
    ],
)
def test_bad_bodies_are_422(remote_server: LiveServer, body: dict[str, object]) -> None:
    r = httpx.post(f"{remote_server.url}/process", json=body, timeout=10)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_error"


async def test_client_leaving_process_cancels_its_queued_chunks(
    remote_server: LiveServer, upstreams: list[Upstream]
) -> None:
    u = upstreams[2]
    text, size = words(10)
    queued = 10 - REMOTE_CONCURRENCY
    before = metric_value(remote_server.url, "convoy_cancelled_total", model="echo")
    async with httpx.AsyncClient(base_url=remote_server.url) as client:
        body = {"text": text, "chunk_size": size, "api_urls": [f"{u.url}/hang"]}
        request = asyncio.create_task(client.post("/process", json=body, timeout=30))
        await wait_until(lambda: u.rec.count("/hang") == REMOTE_CONCURRENCY, "the first chunks in flight")
        request.cancel()  # the client gives up: its connection closes
        with contextlib.suppress(asyncio.CancelledError):
            await request
    await expect_increase(remote_server.url, "convoy_cancelled_total", before, queued, model="echo")
    assert u.rec.count("/hang") == REMOTE_CONCURRENCY
