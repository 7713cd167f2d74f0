"""Rerank over HTTP with a model whose scores are known: a long document scores as its best chunk."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from server.app import create_app
from tests.support.fake_model import FakeModel
from tests.support.live_server import live_server
from tests.support.settings import make_settings

pytestmark = pytest.mark.integration


def score(pair: str) -> np.ndarray:
    """FakeModel sees "query | document": a chunk holding the word needle scores 0.9, others 0.1."""
    _, _, document = pair.partition(" | ")
    return np.array([0.9 if "needle" in document else 0.1, 0.0], dtype=np.float32)


def test_a_long_document_scores_as_its_best_chunk_with_that_chunks_span() -> None:
    # A window of 64 tokens (words here): a 900-word document is chunked, never truncated.
    model = FakeModel(task="rerank", max_tokens=64, vector_for=score)
    words = [f"filler{i}." for i in range(900)]
    words[600] = "needle."
    document = " ".join(words)
    app = create_app(make_settings(), model_factory=lambda _: model)
    with live_server(app) as server:
        r = httpx.post(
            f"{server.url}/v1/rerank",
            json={
                "query": "where is it",
                "documents": ["short filler.", document],
                "return_documents": False,
            },
        )
    assert r.status_code == 200, r.text
    first, second = r.json()["results"]
    assert first["index"] == 1 and first["relevance_score"] == pytest.approx(0.9)
    span = document[first["start"] : first["end"]]
    assert "needle." in span and len(span.split()) <= 64 - 4  # query and special tokens' room left
    assert second["index"] == 0 and second["relevance_score"] == pytest.approx(0.1)
    chunks_scored = [t for t in model.seen if t.startswith("where is it | ")]
    assert len(chunks_scored) > 900 // 64  # every chunk of the long document was scored
    assert sum("needle." in t for t in chunks_scored) == 1
