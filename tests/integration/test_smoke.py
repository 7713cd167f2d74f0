"""Smoke: the packaged MiniLM serves /predict on a real loopback server."""

from __future__ import annotations

import httpx
import pytest

from tests.support.live_server import LiveServer

pytestmark = pytest.mark.integration


def test_predict_answers_with_one_embedding_per_chunk(minilm_server: LiveServer) -> None:
    text = "Convoy batches requests. It serves encoders."
    r = httpx.post(f"{minilm_server.url}/predict", json={"text": text, "chunk_size": 25})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "all-MiniLM-L6-v2" and body["task"] == "embed"
    assert body["chunks"] == len(body["predictions"]) == 2
    for p in body["predictions"]:
        assert len(p["embedding"]) == 384
        assert text[p["start"] : p["end"]]
    assert r.headers["x-request-id"]
