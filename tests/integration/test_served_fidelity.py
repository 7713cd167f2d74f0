"""Served by `convoy serve`, every model shape answers what its own library computes.

Real sentence-transformers folders (tests/support/st_models.py: built from the packaged MiniLM
weights), each served by `convoy serve` in its own process and read with the official clients:
`openai` for /v1/embeddings (prompt_name through `extra_body`), huggingface_hub's InferenceClient
for /embed, plain HTTP for /predict. The reference is sentence-transformers (or transformers'
pipeline, CrossEncoder) on the same folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from huggingface_hub import InferenceClient
from openai import OpenAI
from sentence_transformers import CrossEncoder, SentenceTransformer
from transformers import pipeline

from tests.support.paths import REPO_ROOT
from tests.support.server_process import ServerProcess, convoy_serve_command, server_process
from tests.support.st_models import LABELS

pytestmark = pytest.mark.integration

StModel = Callable[[str], Path]
TEXT = "Dynamic batching groups requests from many clients into one forward pass."
MIN_COSINE = 0.9999


@contextmanager
def convoy_serve(folder: Path, *flags: str) -> Iterator[ServerProcess]:
    with server_process(
        convoy_serve_command("--model", str(folder), "--torch-threads", "1", *flags)
    ) as server:
        yield server


def cosine(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def served_vectors(server: ServerProcess, text: str, prompt_name: str | None = None) -> dict[str, Any]:
    """The vector of `text` from /predict, /v1/embeddings (openai) and /embed (InferenceClient)."""
    name = httpx.get(f"{server.url}/models").json()["models"][0]["name"]
    body: dict[str, Any] = {"text": text}
    extra: dict[str, Any] = {}
    if prompt_name is not None:
        body["prompt_name"] = prompt_name
        extra["prompt_name"] = prompt_name
    r = httpx.post(f"{server.url}/predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    predict = r.json()["predictions"][0]["embedding"]
    openai_client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    openai_vector = (
        openai_client.embeddings.create(model=name, input=[text], encoding_format="float", extra_body=extra)
        .data[0]
        .embedding
    )
    tei = InferenceClient(base_url=server.url).feature_extraction(text, prompt_name=prompt_name)
    return {"/predict": predict, "/v1/embeddings": openai_vector, "/embed": np.asarray(tei).reshape(-1)}


@pytest.mark.parametrize(
    ("shape", "pooling"),
    [
        ("cls_dense_normalize", "cls"),  # (a) CLS + Dense(384 -> 256, tanh) + Normalize
        ("lasttoken", "lasttoken"),  # (b) last token, no Normalize
        ("max", "max"),  # (c)
        ("weightedmean", "weightedmean"),  # (d)
        ("plain", "mean"),  # (e) no sentence-transformers files: mean pooling, said in /info
    ],
)
@pytest.mark.usefixtures("hf_loopback")
def test_each_embedding_shape_equals_sentence_transformers(
    st_model: StModel, shape: str, pooling: str
) -> None:
    folder = st_model(shape)
    reference = SentenceTransformer(str(folder), device="cpu").encode([TEXT])[0]
    with convoy_serve(folder) as server:
        vectors = served_vectors(server, TEXT)
        info = httpx.get(f"{server.url}/info").json()
        card = httpx.get(f"{server.url}/models").json()["models"][0]
    for route, vector in vectors.items():
        assert len(vector) == len(reference), route
        assert cosine(vector, reference) >= MIN_COSINE, route
    # /predict and /v1/embeddings answer the model's own output: unit-length only with Normalize.
    normalized = shape == "cls_dense_normalize"
    assert np.linalg.norm(vectors["/predict"]) == pytest.approx(np.linalg.norm(reference), rel=1e-4)
    assert card["pooling"] == pooling and card["normalized"] is normalized
    assert info["model_type"]["embedding"]["pooling"] == pooling.replace("lasttoken", "last_token")
    if shape == "plain":
        assert "no sentence-transformers files" in card["pooling_source"]


@pytest.mark.usefixtures("hf_loopback")
def test_prompts_by_name_and_by_default_equal_sentence_transformers(st_model: StModel) -> None:
    folder = st_model("prompted")  # (f) prompts {"query", "passage"}, default "query"
    reference = SentenceTransformer(str(folder), device="cpu")
    with convoy_serve(folder) as server:
        by_default = served_vectors(server, TEXT)
        passage = served_vectors(server, TEXT, prompt_name="passage")
        r = httpx.post(f"{server.url}/predict", json={"text": TEXT, "prompt_name": "nope"})
        card = httpx.get(f"{server.url}/models").json()["models"][0]
    for vectors, name in ((by_default, "query"), (passage, "passage")):
        expected = reference.encode([TEXT], prompt_name=name)[0]
        for route, vector in vectors.items():
            assert cosine(vector, expected) >= MIN_COSINE, (name, route)
    assert cosine(by_default["/predict"], passage["/predict"]) < 0.9999  # the prompt matters
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "unknown_prompt" and error["param"] == "prompt_name"
    assert "'query'" in error["message"] and "'passage'" in error["message"]
    assert {k: card["prompts"][k] for k in ("query", "passage")} == {
        "query": "query: ",
        "passage": "passage: ",
    }
    assert card["default_prompt_name"] == "query"


def test_a_server_default_prompt_and_the_prompt_in_the_token_window(st_model: StModel) -> None:
    folder = st_model("prompted")
    reference = SentenceTransformer(str(folder), device="cpu")
    long_text = " ".join(f"word{i}" for i in range(600))  # several chunks of MiniLM's 256 tokens
    with convoy_serve(folder, "--default-prompt-name", "passage") as server:
        r = httpx.post(f"{server.url}/predict", json={"text": long_text, "chunk_size": 100_000}, timeout=60)
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len(predictions) > 1
    for p in predictions:
        chunk = long_text[p["start"] : p["end"]]  # offsets point into the user's own text
        assert p["tokens"] <= 256  # prompt + chunk + special tokens fit the window: nothing cut
        expected = reference.encode([chunk], prompt_name="passage")[0]
        assert cosine(p["embedding"], expected) >= MIN_COSINE


@pytest.mark.parametrize(("shape", "activation"), [("multilabel", "sigmoid"), ("single_label", "softmax")])
@pytest.mark.usefixtures("hf_loopback")
def test_classifiers_apply_the_activation_their_head_means(
    st_model: StModel, shape: str, activation: str
) -> None:
    folder = st_model(shape)
    classify = pipeline("text-classification", model=str(folder), device="cpu", top_k=None)
    expected = {d["label"]: d["score"] for d in classify([TEXT], function_to_apply=activation)[0]}
    logits = {d["label"]: d["score"] for d in classify([TEXT], function_to_apply="none")[0]}
    with convoy_serve(folder) as server:
        r = httpx.post(f"{server.url}/predict", json={"text": TEXT})
        tei = httpx.post(f"{server.url}/", json={"inputs": TEXT}).json()[0]  # InferenceClient's route
        raw = httpx.post(f"{server.url}/", json={"inputs": TEXT, "raw_scores": True}).json()[0]
        card = httpx.get(f"{server.url}/models").json()["models"][0]
    assert r.status_code == 200, r.text
    scores = r.json()["predictions"][0]["scores"]
    assert set(scores) == set(LABELS)
    for label in LABELS:
        assert scores[label] == pytest.approx(expected[label], abs=1e-4)
    assert {e["label"]: e["score"] for e in tei} == pytest.approx(expected, abs=1e-4)
    assert {e["label"]: e["score"] for e in raw} == pytest.approx(logits, abs=1e-4)
    assert card["activation"] == activation
    if activation == "sigmoid":
        assert sum(scores.values()) != pytest.approx(1.0, abs=1e-3)  # independent labels


QUERY = "How does Convoy batch requests?"
DOCUMENTS = [
    "The weather was sunny in the afternoon.",
    "Convoy groups the chunks of concurrent requests into one forward pass.",
    "A recipe for apple pie with cinnamon.",
    "Dynamic batching trades a few milliseconds of latency for throughput.",
]


@pytest.fixture(scope="module")
def reranker(st_model: StModel) -> Iterator[tuple[ServerProcess, CrossEncoder]]:
    folder = st_model("cross_encoder")
    with convoy_serve(folder) as server:
        yield server, CrossEncoder(str(folder), device="cpu")


def test_rerank_order_and_scores_equal_cross_encoder(reranker: tuple[ServerProcess, CrossEncoder]) -> None:
    server, cross_encoder = reranker
    expected = cross_encoder.predict([(QUERY, d) for d in DOCUMENTS])
    order = list(np.argsort(-expected, kind="stable"))
    tei = httpx.post(
        f"{server.url}/rerank", json={"query": QUERY, "texts": DOCUMENTS, "return_text": True}
    ).json()
    assert [e["index"] for e in tei] == order
    for e in tei:
        assert e["score"] == pytest.approx(float(expected[e["index"]]), abs=1e-4)
        assert e["text"] == DOCUMENTS[e["index"]]
    v1 = httpx.post(
        f"{server.url}/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS, "top_n": 2}
    ).json()
    assert [r["index"] for r in v1["results"]] == order[:2]
    for r in v1["results"]:
        assert r["relevance_score"] == pytest.approx(float(expected[r["index"]]), abs=1e-4)
        assert r["document"] == {"text": DOCUMENTS[r["index"]]}
    assert v1["usage"]["total_tokens"] > 0
    bare = httpx.post(
        f"{server.url}/v1/rerank",
        json={"query": QUERY, "documents": [{"text": d} for d in DOCUMENTS], "return_documents": False},
    ).json()
    assert len(bare["results"]) == len(DOCUMENTS) and all("document" not in r for r in bare["results"])
    card = httpx.get(f"{server.url}/models").json()["models"][0]
    assert card["task"] == "rerank" and card["activation"] == "sigmoid"


def test_a_long_document_is_scored_by_its_chunks_not_truncated(
    reranker: tuple[ServerProcess, CrossEncoder],
) -> None:
    server, cross_encoder = reranker
    sentences = [f"Sentence {i} of a long report about traffic and weather in the city." for i in range(80)]
    document = " ".join(sentences)  # ~5,500 characters: several windows of MiniLM's 256 tokens
    assert len(document) >= 5000
    body = {"query": QUERY, "texts": [document, DOCUMENTS[0]]}
    r = httpx.post(f"{server.url}/rerank", json=body, timeout=60)
    assert r.status_code == 200, r.text
    best = next(e for e in r.json() if e["index"] == 0)
    span = document[best["start"] : best["end"]]
    assert 0 < len(span) < len(document) and span.strip() == span
    # Its score is the cross-encoder's on that chunk (the best-scoring chunk: see the batcher-level
    # test with a model whose scores are known, tests/integration/test_rerank_chunks.py).
    assert best["score"] == pytest.approx(float(cross_encoder.predict([(QUERY, span)])[0]), abs=1e-4)


@pytest.mark.parametrize(
    ("route", "body", "param"),
    [
        ("/rerank", {"texts": ["a"]}, "query"),
        ("/rerank", {"query": "q"}, "texts"),
        ("/rerank", {"query": "q", "texts": []}, "texts"),
        ("/v1/rerank", {"query": "q", "documents": "not a list"}, "documents"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
        ("/v1/rerank", {"documents": ["a"]}, "query"),
    ],
)
def test_bad_rerank_bodies_are_422_naming_the_field(
    reranker: tuple[ServerProcess, CrossEncoder], route: str, body: dict[str, Any], param: str
) -> None:
    server, _ = reranker
    r = httpx.post(f"{server.url}{route}", json=body)
    assert r.status_code in (400, 422), r.text
    assert param in r.json()["error"]["param"]


def test_embedding_routes_refuse_a_reranker(reranker: tuple[ServerProcess, CrossEncoder]) -> None:
    server, _ = reranker
    r = httpx.post(f"{server.url}/predict", json={"text": "hello"})
    assert r.status_code == 400 and "rerank" in r.json()["error"]["message"]


def test_the_readme_rerank_example_answers_as_shown(reranker: tuple[ServerProcess, CrossEncoder]) -> None:
    server, _ = reranker
    block = re.search(
        r"<!-- snippet: rerank -->\s*```bash\n(.*?)```", (REPO_ROOT / "README.md").read_text(), re.DOTALL
    )
    assert block, "README has no rerank example"
    body = json.loads(re.search(r"-d '(.*?)'", block.group(1), re.DOTALL).group(1))  # type: ignore[union-attr]
    shown = json.loads(block.group(1).split("# ", 1)[1])
    answer = httpx.post(f"{server.url}/v1/rerank", json=body).json()
    assert set(answer) == set(shown)
    assert [set(r) for r in answer["results"]] == [set(r) for r in shown["results"]]
    assert answer["results"][0]["document"]["text"] in body["documents"]  # (the test model's head is random)
