"""The text-embeddings-inference-compatible API, driven by huggingface_hub's InferenceClient."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError

from server.app import create_app
from server.batching.batched import CPU_BATCH_SIZE
from tests.support.live_server import LiveServer, live_server
from tests.support.settings import make_settings

pytestmark = pytest.mark.integration

TEXTS = ["Convoy batches requests from many clients.", "Encoders turn text into vectors."]


def predict_vectors(server: LiveServer, texts: list[str]) -> np.ndarray:
    rows = []
    for text in texts:
        r = httpx.post(f"{server.url}/predict", json={"text": text})
        assert r.status_code == 200, r.text
        rows.append(r.json()["predictions"][0]["embedding"])
    return np.array(rows, dtype=np.float32)


@pytest.mark.usefixtures("hf_loopback")
def test_inference_client_feature_extraction_equals_predict(minilm_server: LiveServer) -> None:
    client = InferenceClient(base_url=minilm_server.url)
    one = client.feature_extraction(TEXTS[0])
    assert one.shape == (1, 384) and one.dtype == np.float32
    np.testing.assert_allclose(one, predict_vectors(minilm_server, TEXTS[:1]), atol=1e-5)
    both = client.feature_extraction(TEXTS)
    np.testing.assert_allclose(both, predict_vectors(minilm_server, TEXTS), atol=1e-5)


@pytest.mark.usefixtures("hf_loopback")
def test_inference_client_errors_are_http_errors(minilm_server: LiveServer) -> None:
    client = InferenceClient(base_url=minilm_server.url)
    with pytest.raises(HfHubHTTPError) as err:
        client.feature_extraction("word " * 400)
    assert err.value.response.status_code == 400
    truncated = client.feature_extraction("word " * 400, truncate=True)
    assert truncated.shape == (1, 384)


def test_embed_route_matches_predict_and_lists_every_input(minilm_server: LiveServer) -> None:
    r = httpx.post(f"{minilm_server.url}/embed", json={"inputs": TEXTS})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()), predict_vectors(minilm_server, TEXTS), atol=1e-5)
    single = httpx.post(f"{minilm_server.url}/embed", json={"inputs": TEXTS[0]}).json()
    assert len(single) == 1 and len(single[0]) == 384
    for name in ("x-queue-time", "x-inference-time", "x-total-time", "x-request-id"):
        assert r.headers[name]


def test_embed_without_normalisation_gives_raw_mean_pooled_vectors(minilm_server: LiveServer) -> None:
    unit = np.array(httpx.post(f"{minilm_server.url}/embed", json={"inputs": TEXTS[0]}).json()[0])
    raw_r = httpx.post(f"{minilm_server.url}/embed", json={"inputs": TEXTS[0], "normalize": False})
    raw = np.array(raw_r.json()[0])
    norm = np.linalg.norm(raw)
    assert abs(norm - 1.0) > 0.1  # MiniLM's pooled vectors are several units long
    np.testing.assert_allclose(raw / norm, unit, atol=1e-5)


def test_embed_truncate_flag(minilm_server: LiveServer) -> None:
    long_text = "word " * 400
    refused = httpx.post(f"{minilm_server.url}/embed", json={"inputs": ["ok", long_text]})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "inputs[1]"
    cut = httpx.post(f"{minilm_server.url}/embed", json={"inputs": long_text, "truncate": True})
    assert cut.status_code == 200 and len(cut.json()[0]) == 384


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": []},
        {"inputs": ""},
        {"inputs": "x", "truncation_direction": "left"},
        {"inputs": "x", "dimensions": 1000},
        {"inputs": 3},
        {},
    ],
)
def test_embed_bad_requests_are_4xx_in_the_error_shape(
    minilm_server: LiveServer, body: dict[str, object]
) -> None:
    r = httpx.post(f"{minilm_server.url}/embed", json=body)
    assert r.status_code in (400, 422), r.text
    assert set(r.json()["error"]) >= {"message", "type", "param", "code"}


def test_info_describes_the_model(minilm_server: LiveServer) -> None:
    info = httpx.get(f"{minilm_server.url}/info").json()
    assert info["model_id"] == "all-MiniLM-L6-v2"
    assert info["model_dtype"] == "float32" and info["device"] == "cpu"
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["max_input_length"] == 256
    assert info["max_batch_size"] == CPU_BATCH_SIZE  # the default on CPU


def test_health_and_ready_answer_200_when_serving(minilm_server: LiveServer) -> None:
    assert httpx.get(f"{minilm_server.url}/health").status_code == 200
    assert httpx.get(f"{minilm_server.url}/ready").status_code == 200


# ---- a classifier: POST / answers label scores, as TEI does -------------------------------------
@pytest.fixture(scope="module")
def classifier_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """MiniLM's encoder with a seeded, untrained 3-label head: a real sequence classifier."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from models.loader import default_model_path

    source = default_model_path()
    target = Path(tmp_path_factory.mktemp("classifier"))
    torch.manual_seed(0)
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    network = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    network.save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    with live_server(create_app(make_settings(model=str(target), max_batch_size=4))) as server:
        yield server


@pytest.mark.usefixtures("hf_loopback")
def test_root_route_classifies_for_a_classifier(classifier_server: LiveServer) -> None:
    expected = httpx.post(f"{classifier_server.url}/predict", json={"text": TEXTS[0]}).json()
    scores = expected["predictions"][0]["scores"]

    one = httpx.post(f"{classifier_server.url}/", json={"inputs": TEXTS[0]})
    assert one.status_code == 200, one.text
    assert len(one.json()) == 1  # the Inference API's shape: a list of scores per input, even for one
    got = one.json()[0]
    assert [g["label"] for g in got] == sorted(scores, key=lambda k: -scores[k])
    for g in got:
        assert g["score"] == pytest.approx(scores[g["label"]], abs=1e-5)
    many = httpx.post(f"{classifier_server.url}/", json={"inputs": TEXTS}).json()
    assert len(many) == 2
    assert [m["label"] for m in many[0]] == [g["label"] for g in got]
    assert [m["score"] for m in many[0]] == pytest.approx([g["score"] for g in got], abs=1e-5)

    # huggingface_hub's client parses that shape: every label, and `parameters` honoured.
    client = InferenceClient(base_url=classifier_server.url)
    labels = client.text_classification(TEXTS[0])
    assert [(e.label, e.score) for e in labels] == [(g["label"], pytest.approx(g["score"])) for g in got]
    top = client.text_classification(TEXTS[0], top_k=1)
    assert [e.label for e in top] == [got[0]["label"]]
    logits = client.text_classification(TEXTS[0], function_to_apply="none")
    raw = httpx.post(f"{classifier_server.url}/", json={"inputs": TEXTS[0], "raw_scores": True}).json()[0]
    assert [(e.label, e.score) for e in logits] == [(r["label"], pytest.approx(r["score"])) for r in raw]
    sigmoid = client.text_classification(TEXTS[0], function_to_apply="sigmoid")
    assert [e.score for e in sigmoid] == pytest.approx([1 / (1 + math.exp(-r["score"])) for r in raw])
    bad = httpx.post(f"{classifier_server.url}/", json={"inputs": "x", "parameters": {"top_k": 0}})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "body.parameters.top_k"

    info = httpx.get(f"{classifier_server.url}/info").json()
    assert info["model_type"]["classifier"]["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    refused = httpx.post(f"{classifier_server.url}/embed", json={"inputs": "x"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "model"
    openai_refused = httpx.post(
        f"{classifier_server.url}/v1/embeddings", json={"input": "x", "model": info["model_id"]}
    )
    assert openai_refused.status_code == 400


def test_tokenize_shows_how_the_model_cuts_each_input(minilm_server: LiveServer) -> None:
    from transformers import AutoTokenizer

    from models.hub import default_model_path

    text = "Convoy batches requests."
    r = httpx.post(f"{minilm_server.url}/tokenize", json={"inputs": [text, "Hi"]})
    assert r.status_code == 200, r.text
    first, second = r.json()
    expected = AutoTokenizer.from_pretrained(str(default_model_path()))(text)["input_ids"]
    assert [t["id"] for t in first] == expected
    assert first[0]["special"] and first[-1]["special"] and first[0]["start"] is None
    for token in first[1:-1]:
        assert not token["special"]
        assert text[token["start"] : token["stop"]] == token["text"]  # offsets into the input, as TEI
    bare = httpx.post(
        f"{minilm_server.url}/tokenize", json={"inputs": text, "add_special_tokens": False}
    ).json()
    assert [t["id"] for t in bare[0]] == expected[1:-1]
    assert len(second) == 3
    unknown = httpx.post(f"{minilm_server.url}/tokenize", json={"inputs": text, "prompt_name": "query"})
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_prompt"
