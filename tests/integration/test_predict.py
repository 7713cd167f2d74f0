"""/predict end to end: real uvicorn on loopback, real MiniLM, compared with transformers."""

from __future__ import annotations

import asyncio
import re

import httpx
import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from models.loader import default_model_path
from server.app import create_app
from tests.support.live_server import LiveServer, live_server
from tests.support.settings import make_settings
from tests.support.tiny_classifier import LABELS, build_tiny_classifier

pytestmark = pytest.mark.integration

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Dynamic batching groups requests from many clients into one forward pass. "
    "It raises throughput without hurting latency much.\n\nA second paragraph follows here, "
    "with a few more words to make it split into several chunks.",
    "Ünïcödé, emoji 🚀 and CJK 中文文本 all go through the tokenizer.",
]


def reference_embeddings(texts: list[str]) -> np.ndarray:
    """all-MiniLM-L6-v2 computed directly with transformers: mean pooling + L2 norm."""
    path = str(default_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    with torch.inference_mode():
        enc = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(pooled, dim=1).numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def predict(server: LiveServer, text: str, chunk_size: int = 500) -> dict:
    r = httpx.post(f"{server.url}/predict", json={"text": text, "chunk_size": chunk_size}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_chunk_embeddings_equal_transformers(minilm_server: LiveServer) -> None:
    for text in TEXTS:
        body = predict(minilm_server, text, chunk_size=80)
        chunk_texts = [text[p["start"] : p["end"]] for p in body["predictions"]]
        expected = reference_embeddings(chunk_texts)
        for pred, ref in zip(body["predictions"], expected, strict=True):
            assert cosine(np.array(pred["embedding"]), ref) >= 0.9999
        agg = np.array(body["aggregate"]["embedding"])
        assert abs(np.linalg.norm(agg) - 1) < 1e-4


def test_chunk_embeddings_equal_sentence_transformers(minilm_server: LiveServer) -> None:
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(default_model_path()), device="cpu")
    for text in TEXTS:
        body = predict(minilm_server, text, chunk_size=80)
        chunk_texts = [text[p["start"] : p["end"]] for p in body["predictions"]]
        expected = model.encode(chunk_texts, normalize_embeddings=True)
        for pred, ref in zip(body["predictions"], expected, strict=True):
            assert cosine(np.array(pred["embedding"]), ref) >= 0.9999


def test_64_concurrent_requests_are_batched_across_requests() -> None:
    settings = make_settings(max_batch_size=8)
    texts = [f"Request number {i} asks about topic {i % 7}." for i in range(64)]
    expected = reference_embeddings(texts)

    async def fire(url: str) -> list[dict]:
        async with httpx.AsyncClient(timeout=120) as client:
            rs = await asyncio.gather(*(client.post(f"{url}/predict", json={"text": t}) for t in texts))
        assert all(r.status_code == 200 for r in rs), [r.text for r in rs if r.status_code != 200]
        return [r.json() for r in rs]

    with live_server(create_app(settings)) as server:
        bodies = asyncio.run(fire(server.url))
        metrics = httpx.get(f"{server.url}/metrics").text
    for body, ref in zip(bodies, expected, strict=True):
        assert body["chunks"] == 1
        assert cosine(np.array(body["predictions"][0]["embedding"]), ref) >= 0.9999
    buckets = {
        float(le): float(v)
        for le, v in re.findall(r'convoy_batch_size_bucket\{le="([^"]+)",model="[^"]+"\} (\S+)', metrics)
        if le != "+Inf"
    }
    count = float(re.search(r"convoy_batch_size_count\{[^}]*\} (\S+)", metrics).group(1))
    total = float(re.search(r"convoy_batch_size_sum\{[^}]*\} (\S+)", metrics).group(1))
    assert total == 64
    assert buckets[1.0] < count, "every batch had one item: no cross-request batching"
    assert buckets[8.0] == count, "a batch exceeded max_batch_size"


@pytest.fixture(scope="module")
def classifier_server(tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    folder = build_tiny_classifier(tmp_path_factory.mktemp("tiny-classifier"))
    with live_server(create_app(make_settings(model=str(folder)))) as server:
        yield server


def test_classifier_serves_labels_from_id2label(classifier_server: LiveServer) -> None:
    body = predict(classifier_server, "This is great. This is awful.\n\nMeh.", chunk_size=15)
    assert body["task"] == "classify"
    assert body["chunks"] == 3
    for p in body["predictions"] + [body["aggregate"]]:
        assert p["label"] in LABELS
        assert set(p["scores"]) == set(LABELS)
        assert abs(sum(p["scores"].values()) - 1) < 1e-5
        assert p["score"] == max(p["scores"].values())
    models = httpx.get(f"{classifier_server.url}/models").json()["models"]
    assert models[0]["task"] == "classify" and models[0]["labels"] == list(LABELS)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "body.text"),
        ({"text": ""}, "body.text"),
        ({"text": "   \n "}, "body.text"),
        ({"text": "ok", "chunk_size": 0}, "body.chunk_size"),
        ({"text": "ok", "chunk_size": "big"}, "body.chunk_size"),
        ({"text": 5}, "body.text"),
        ({"text": "ok", "extra": 1}, "body.extra"),
    ],
)
def test_bad_input_gets_422_with_field_location(minilm_server: LiveServer, body: dict, param: str) -> None:
    r = httpx.post(f"{minilm_server.url}/predict", json=body)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["param"] == param and error["code"] == "validation_error"
    assert "Traceback" not in r.text


def test_malformed_json_and_unknown_routes_use_the_error_shape(minilm_server: LiveServer) -> None:
    r = httpx.post(
        f"{minilm_server.url}/predict", content=b'{"text": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    r = httpx.get(f"{minilm_server.url}/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_operational_routes(minilm_server: LiveServer) -> None:
    assert httpx.get(f"{minilm_server.url}/health").status_code == 200
    assert httpx.get(f"{minilm_server.url}/ready").json() == {"status": "ready"}
    (card,) = httpx.get(f"{minilm_server.url}/models").json()["models"]
    assert card == {
        "name": "all-MiniLM-L6-v2",
        "task": "embed",
        "device": "cpu",
        "dtype": "float32",
        "max_batch_size": 32,
        "max_tokens": 256,
        "labels": None,
        # What the model's own files say it computes (issue 11): MiniLM's modules.json.
        "pooling": "mean",
        "pooling_source": "modules.json",
        "normalized": True,
        "dense_layers": 0,
        "activation": None,
        "prompts": None,
        "default_prompt_name": None,
        "default_prompt": None,
        "matryoshka_dimensions": None,
    }
    metrics = httpx.get(f"{minilm_server.url}/metrics").text
    for name in (
        "convoy_queue_depth",
        "convoy_batch_size_bucket",
        "convoy_request_latency_seconds_bucket",
        "convoy_inference_seconds_bucket",
        "convoy_chunks_total",
        "convoy_rejected_total",
    ):
        assert f"# TYPE {name.removesuffix('_bucket').removesuffix('_total')}" in metrics
    schema = httpx.get(f"{minilm_server.url}/openapi.json").json()
    assert {"/predict", "/health", "/ready", "/models", "/metrics"} <= set(schema["paths"])
    assert httpx.get(f"{minilm_server.url}/docs").status_code == 200


def test_long_text_chunks_respect_the_token_limit(minilm_server: LiveServer) -> None:
    # Digits separated by spaces cost ~1 token per 2 characters: 2000 chars would be ~1000 tokens.
    text = " ".join(str(i % 10) for i in range(1000))
    body = predict(minilm_server, text, chunk_size=2000)
    assert body["chunks"] >= 4
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    for p in body["predictions"]:
        untruncated = len(tokenizer(text[p["start"] : p["end"]])["input_ids"])
        assert untruncated <= 256 and p["tokens"] == untruncated
