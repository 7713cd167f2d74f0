"""Admission with the real MiniLM: a big request on a fresh server is served, and the estimate a
busy server would refuse on is right within 2x."""

from __future__ import annotations

import asyncio
import random
import time

import numpy as np
import pytest
from openai import OpenAI

from server.app import create_app, load_configured_model
from server.batching.batched import CPU_BATCH_SIZE, CPU_BATCH_TOKENS
from server.batching.batcher import DynamicBatcher
from tests.support.live_server import live_server
from tests.support.settings import make_settings

pytestmark = pytest.mark.integration

_VOCABULARY = (
    "convoy batches requests from many clients into one forward pass so the model stays busy while "
    "each client waits a little longer than it would alone but far less than behind a queue"
)
WORDS = _VOCABULARY.split()


def documents(n: int, words: int, seed: int = 7) -> list[str]:
    """`n` documents of about `words` words (~1.2 MiniLM tokens each): LangChain's chunk size."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) + f" ({i})." for i in range(n)]


def test_a_thousand_documents_on_a_fresh_server_are_answered() -> None:
    settings = make_settings(access_log=False)
    with live_server(create_app(settings)) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)
        client.embeddings.create(model="all-MiniLM-L6-v2", input=["one small request first"])
        docs = documents(1000, 40)
        answer = client.embeddings.create(model="all-MiniLM-L6-v2", input=docs, encoding_format="float")
    assert len(answer.data) == 1000
    assert all(len(d.embedding) == 384 for d in answer.data)


async def test_the_estimate_for_a_thousand_documents_is_right_within_2x() -> None:
    settings = make_settings()
    model = await asyncio.to_thread(load_configured_model, settings)
    batcher = DynamicBatcher(
        model,
        max_batch_size=CPU_BATCH_SIZE,
        max_batch_tokens=CPU_BATCH_TOKENS,
        max_wait_ms=settings.max_wait_ms,
        max_queue=settings.max_queue,
    )
    await batcher.start()
    try:
        # Traffic of mixed sizes and lengths teaches the cost model, as a busy server's would.
        rng = random.Random(3)
        for _ in range(24):
            n, words = rng.choice([1, 2, 4, 8, 16, 32]), rng.choice([5, 20, 40, 80])
            await asyncio.gather(*batcher.submit(documents(n, words, seed=rng.randrange(1000))))
        docs = documents(1000, 40)
        estimate = batcher.estimate_s(docs)
        assert estimate is not None, "the cost fit should be trusted after mixed traffic"
        started = time.perf_counter()
        results = await asyncio.gather(*batcher.submit(docs))
        actual = time.perf_counter() - started
    finally:
        await batcher.stop()
    assert len(results) == 1000 and np.isfinite(results[0].vector).all()
    assert actual / 2 <= estimate <= actual * 2, f"estimated {estimate:.2f} s, took {actual:.2f} s"
