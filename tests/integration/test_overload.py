"""Overload and model faults over real HTTP: refuse fast, keep throughput, isolate failures."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from server.app import create_app
from tests.support.fake_model import FakeModel
from tests.support.live_server import live_server
from tests.support.server_process import fake_app_command, server_process
from tests.support.settings import make_settings

pytestmark = pytest.mark.integration

BATCH, SECONDS_PER_BATCH = 4, 0.2  # capacity: 20 chunks/s, light enough for a Python client


async def closed_loop(url: str, concurrency: int, seconds: float) -> float:
    done = 0
    stop_at = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            r = await client.post(f"{url}/predict", json={"text": "steady"})
            assert r.status_code == 200
            done += 1

    async with httpx.AsyncClient(timeout=30) as client:
        began = time.monotonic()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return done / (time.monotonic() - began)


async def open_loop(url: str, rate: float, seconds: float, deadline_s: float) -> tuple[Counter[str], float]:
    outcomes: Counter[str] = Counter()
    latest_ok = 0.0
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx.AsyncClient(timeout=deadline_s + 5, limits=limits) as client:
        began = time.monotonic()

        async def one() -> None:
            nonlocal latest_ok
            sent = time.monotonic()
            try:
                r = await client.post(
                    f"{url}/predict", json={"text": "load"}, headers={"X-Request-Timeout": str(deadline_s)}
                )
            except httpx.HTTPError as exc:
                outcomes[type(exc).__name__] += 1
                return
            outcomes[str(r.status_code)] += 1
            if r.status_code == 503:
                assert "retry-after" in r.headers
            if r.status_code == 200:
                latest_ok = time.monotonic()
                assert time.monotonic() - sent < deadline_s + 1

        tasks = []
        n = int(rate * seconds)
        for i in range(n):
            delay = began + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the offered load, not synchronisation
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        return outcomes, outcomes["200"] / (latest_ok - began)


def test_four_times_capacity_gets_200_or_503_and_keeps_throughput() -> None:
    env = {"FAKE_BATCH": str(BATCH), "FAKE_SECONDS_PER_BATCH": str(SECONDS_PER_BATCH)}
    # Its own process, as in production: a client in the server's process would starve it.
    with server_process(fake_app_command("slow_fake_app"), env=env) as server:
        capacity = asyncio.run(closed_loop(server.url, concurrency=2 * BATCH, seconds=3))
        outcomes, accepted_rate = asyncio.run(open_loop(server.url, 4 * capacity, 20, deadline_s=2.0))
    assert set(outcomes) <= {"200", "503"}, outcomes
    assert outcomes["503"] > outcomes["200"]  # it really was overloaded
    assert accepted_rate >= 0.8 * capacity, (accepted_rate, capacity)


def test_only_the_poisoned_request_fails_and_oom_batches_split() -> None:
    def fail_if(batch: list[str]) -> bool:
        return "poison" in batch or len(batch) > 2  # a bad input, and "out of memory" above 2

    model = FakeModel(fail_if=fail_if)
    with live_server(create_app(make_settings(max_batch_size=8), model_factory=lambda _: model)) as server:

        async def fire() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                texts = [f"fine {i}" for i in range(12)] + ["poison"]
                return await asyncio.gather(
                    *(client.post(f"{server.url}/predict", json={"text": t}) for t in texts)
                )

        responses = asyncio.run(fire())
        assert [r.status_code for r in responses[:-1]] == [200] * 12
        assert responses[-1].status_code == 422
        assert responses[-1].json()["error"]["code"] == "inference_failed"
        assert httpx.get(f"{server.url}/ready").status_code == 200
        assert httpx.post(f"{server.url}/predict", json={"text": "after"}).status_code == 200
    assert max(len(b) for b in model.batches) <= 2
