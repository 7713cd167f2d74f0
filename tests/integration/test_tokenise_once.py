"""A long text is tokenised once: the tokens chunking counted are the ones the model runs on.

Chunking must tokenise a piece that could exceed MiniLM's window to count it; the pieces that
fit go to the batch with those tokens (server/api/inputs.py `chunk_for_model`), and the answers
are the ones the batch's own tokenisation gives.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import pytest
from openai import OpenAI
from sentence_transformers import SentenceTransformer

from models.base import Encoded
from models.hub import default_model_path
from models.tokenization import InputEncoder
from server.api.inputs import chunk_for_model, chunk_text, submit
from server.app import create_app, load_configured_model
from server.batching.backend import gather_results
from server.batching.batched import BatchedBackend
from server.metrics import Metrics
from tests.support.fake_model import record_tokenised
from tests.support.live_server import live_server
from tests.support.settings import make_settings

pytestmark = pytest.mark.integration


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


SENTENCES = [
    f"Sentence {i} of a long report about traffic, weather and trains in the city." for i in range(60)
]
LONG_TEXT = " ".join(SENTENCES)  # ~4,600 characters: several windows of MiniLM's 256 tokens
PARAGRAPH = " ".join(SENTENCES[:12])  # ~900 characters: one window, but it has to be counted


@pytest.mark.parametrize("prompt", [None, "query: "])
async def test_each_chunk_is_tokenised_once_and_answers_as_if_tokenised_in_the_batch(
    prompt: str | None,
) -> None:
    settings = make_settings()
    model = await asyncio.to_thread(load_configured_model, settings)
    tokenised = record_tokenised(model)
    backend = BatchedBackend.batched(model, settings, Metrics(32))
    await backend.start()
    try:
        for text in (LONG_TEXT, PARAGRAPH):
            tokenised.clear()
            chunked = await chunk_for_model(text, 100_000, settings, backend, prompt=prompt)
            assert chunked.chunks == await chunk_text(text, 100_000, settings, backend, prompt=prompt)
            assert chunked.encoded is not None and all(e is not None for e in chunked.encoded)
            pending = submit(backend, chunked.texts, 60, prompt=prompt, encoded=chunked.encoded)
            once = await gather_results(pending.futures)
            counts = Counter(tokenised)
            assert all(counts[t] == 1 for t in chunked.texts), counts
            again = await gather_results(submit(backend, chunked.texts, 60, prompt=prompt).futures)
            for a, b in zip(once, again, strict=True):
                assert a.tokens == b.tokens
                np.testing.assert_allclose(a.vector, b.vector, atol=1e-6)
    finally:
        await backend.stop()


def test_served_long_inputs_are_tokenised_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through HTTP: /predict chunks the paragraph (it has to count it), /v1/embeddings checks its
    length (it must refuse an over-long input): both count with the tokens the model then runs on."""
    tokenised: list[str] = []
    counted: list[str] = []
    encode, count = InputEncoder.encode, InputEncoder.count_tokens

    def recording_encode(self: InputEncoder, texts: Sequence[str], **kw: Any) -> list[Encoded]:
        tokenised.extend(texts)
        return encode(self, texts, **kw)

    def recording_count(self: InputEncoder, texts: Sequence[str]) -> list[int]:
        counted.extend(texts)
        return count(self, texts)

    monkeypatch.setattr(InputEncoder, "encode", recording_encode)
    monkeypatch.setattr(InputEncoder, "count_tokens", recording_count)
    reference = SentenceTransformer(str(default_model_path()), device="cpu")
    short = "A short text is not counted: the batch tokenises it."
    with live_server(create_app(make_settings())) as server:
        tokenised.clear()
        r = httpx.post(f"{server.url}/predict", json={"text": PARAGRAPH, "chunk_size": 5000}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["chunks"] == 1 and tokenised == [PARAGRAPH] and counted == []
        predicted = r.json()["predictions"][0]["embedding"]

        tokenised.clear()
        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        answer = client.embeddings.create(model="all-MiniLM-L6-v2", input=[PARAGRAPH, short])
        assert sorted(tokenised) == sorted([PARAGRAPH, short]) and counted == []
    expected = reference.encode([PARAGRAPH, short])
    assert cosine(predicted, expected[0]) >= 0.9999
    for row, ref in zip(answer.data, expected, strict=True):
        assert cosine(row.embedding, ref) >= 0.9999
