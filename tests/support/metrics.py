"""Read a live server's Prometheus metrics, and wait (bounded) for a condition to hold."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families


def metric_value(base_url: str, sample: str, **labels: str) -> float:
    """The value of one sample (e.g. `convoy_cancelled_total`), 0 when it is absent."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Poll `condition` (off the loop) until it holds; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def expect_increase(base_url: str, sample: str, before: float, by: int, **labels: str) -> None:
    """Wait for `sample` to grow `by` from `before`, then check it grew by exactly that much."""
    await wait_until(
        lambda: metric_value(base_url, sample, **labels) - before >= by, f"{sample} to grow by {by}"
    )
    assert metric_value(base_url, sample, **labels) - before == by


def wait_for(predicate: Callable[[], bool], timeout_s: float = 20) -> None:
    """Poll `predicate` from a plain (non-async) test until it holds; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.02)
