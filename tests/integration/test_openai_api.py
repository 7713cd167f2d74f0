"""The OpenAI-compatible API, driven by the official `openai` client against real MiniLM."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI

from server.app import create_app
from tests.support.live_server import LiveServer, live_server
from tests.support.settings import make_settings

pytestmark = pytest.mark.integration

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["Convoy batches requests from many clients.", "Encoders turn text into vectors."]


@pytest.fixture(scope="module")
def client(minilm_server: LiveServer) -> OpenAI:
    # No auth on this server; the client insists on a key all the same.
    return OpenAI(base_url=f"{minilm_server.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def ids_server() -> Iterator[LiveServer]:
    """MiniLM with token-id input turned on (`--token-ids accept`); the default refuses it."""
    with live_server(create_app(make_settings(token_ids="accept"))) as server:
        yield server


@pytest.fixture(scope="module")
def ids_client(ids_server: LiveServer) -> OpenAI:
    return OpenAI(base_url=f"{ids_server.url}/v1", api_key="unused", max_retries=0)


def as_vector(embedding: list[float] | str) -> np.ndarray:
    """An explicit base64 answer stays a string in the client; decode it the way OpenAI documents."""
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    return np.array(embedding, dtype=np.float32)


def predict_vector(server: LiveServer, text: str) -> np.ndarray:
    """The vector /predict gives a short text (one chunk)."""
    r = httpx.post(f"{server.url}/predict", json={"text": text})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["chunks"] == 1
    return np.array(body["predictions"][0]["embedding"], dtype=np.float32)


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_single_input_equals_predict(client: OpenAI, minilm_server: LiveServer, encoding_format: str) -> None:
    resp = client.embeddings.create(input=TEXTS[0], model=MODEL, encoding_format=encoding_format)  # type: ignore[arg-type]
    assert resp.object == "list" and resp.model == MODEL
    assert [d.index for d in resp.data] == [0]
    got = as_vector(resp.data[0].embedding)
    assert isinstance(resp.data[0].embedding, str if encoding_format == "base64" else list)
    np.testing.assert_allclose(got, predict_vector(minilm_server, TEXTS[0]), atol=1e-5)
    assert resp.usage.prompt_tokens == resp.usage.total_tokens > 2


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_list_input_keeps_order_and_equals_predict(
    client: OpenAI, minilm_server: LiveServer, encoding_format: str
) -> None:
    resp = client.embeddings.create(input=TEXTS, model=MODEL, encoding_format=encoding_format)  # type: ignore[arg-type]
    assert [d.index for d in resp.data] == [0, 1]
    for text, item in zip(TEXTS, resp.data, strict=True):
        expected = predict_vector(minilm_server, text)
        np.testing.assert_allclose(as_vector(item.embedding), expected, atol=1e-5)


def test_client_default_encoding_is_base64_and_decodes(client: OpenAI, minilm_server: LiveServer) -> None:
    # The official client asks for base64 when no format is given; the wire answer is a string.
    raw = client.embeddings.with_raw_response.create(input=TEXTS[1], model=MODEL)
    assert isinstance(raw.http_response.json()["data"][0]["embedding"], str)
    vec = np.array(raw.parse().data[0].embedding, dtype=np.float32)
    np.testing.assert_allclose(vec, predict_vector(minilm_server, TEXTS[1]), atol=1e-5)


def test_token_ids_are_read_in_the_models_vocabulary(ids_client: OpenAI) -> None:
    client = ids_client
    # [CLS]/[SEP]-free WordPiece ids of "hello world" in MiniLM's vocabulary.
    by_ids = client.embeddings.create(input=[[7592, 2088]], model=MODEL, encoding_format="float")
    flat = client.embeddings.create(input=[7592, 2088], model=MODEL, encoding_format="float")
    by_text = client.embeddings.create(input="hello world", model=MODEL, encoding_format="float")
    np.testing.assert_allclose(by_ids.data[0].embedding, by_text.data[0].embedding, atol=1e-5)
    np.testing.assert_allclose(flat.data[0].embedding, by_text.data[0].embedding, atol=1e-5)


def test_dimensions_are_refused_for_a_model_not_trained_to_be_cut(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(input=TEXTS[0], model=MODEL, dimensions=64)
    error = info.value.body
    assert isinstance(error, dict) and error["param"] == "dimensions"
    assert "not a Matryoshka model" in error["message"]


def test_dimensions_cut_and_renormalise_on_a_matryoshka_model() -> None:
    # MiniLM declared Matryoshka by the operator (--matryoshka-dims), as for a model whose
    # config.json does not list its sizes.
    app = create_app(make_settings(matryoshka_dims=[64, 128]))
    with live_server(app) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        full = client.embeddings.create(input=TEXTS[0], model=MODEL, encoding_format="float")
        cut = client.embeddings.create(input=TEXTS[0], model=MODEL, dimensions=64, encoding_format="float")
        with pytest.raises(openai.BadRequestError, match="not one model"):
            client.embeddings.create(input=TEXTS[0], model=MODEL, dimensions=100)
        card = httpx.get(f"{server.url}/models").json()["models"][0]
    vec = np.array(cut.data[0].embedding)
    assert vec.shape == (64,)
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)
    head = np.array(full.data[0].embedding[:64])
    np.testing.assert_allclose(vec, head / np.linalg.norm(head), atol=1e-5)
    assert card["matryoshka_dimensions"] == [64, 128]


def test_models_list(client: OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert models.data[0].object == "model" and models.data[0].created > 0
    assert client.models.retrieve(MODEL).id == MODEL


def test_unknown_model_is_404_in_openai_shape(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.embeddings.create(input="x", model="text-embedding-3-small")
    body = err.value.body
    assert isinstance(body, dict) and body["param"] == "model" and body["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("text-embedding-3-small")


def test_over_long_input_is_400_naming_its_index(client: OpenAI) -> None:
    long_text = "word " * 400  # ~400 tokens; MiniLM takes 256 with [CLS]/[SEP]
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(input=["short", long_text], model=MODEL)
    body = err.value.body
    assert isinstance(body, dict)
    assert body["param"] == "input[1]" and body["code"] == "context_length_exceeded"
    assert "input[1]" in body["message"]


def test_over_long_token_ids_are_400(ids_client: OpenAI) -> None:
    client = ids_client
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(input=[[7592], [2088] * 300], model=MODEL)
    assert isinstance(err.value.body, dict) and err.value.body["param"] == "input[1]"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ["fine", ""], "model": MODEL}, "input[1]"),
        ({"input": [], "model": MODEL}, "input"),
        ({"input": "x", "model": MODEL, "dimensions": 385}, "dimensions"),
        ({"input": "x", "model": MODEL, "dimensions": 0}, "body.dimensions"),
        ({"input": "x", "model": MODEL, "encoding_format": "int8"}, "body.encoding_format"),
        ({"input": ["a", 1], "model": MODEL}, None),
        ({"model": MODEL}, "body.input"),
        ({"input": "x"}, "body.model"),
    ],
)
def test_bad_requests_are_400_in_openai_shape(
    minilm_server: LiveServer, body: dict[str, object], param: str | None
) -> None:
    r = httpx.post(f"{minilm_server.url}/v1/embeddings", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


def test_out_of_vocabulary_token_id_is_400_naming_its_index(ids_server: LiveServer) -> None:
    r = httpx.post(f"{ids_server.url}/v1/embeddings", json={"input": [[1, 99_999_999]], "model": MODEL})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "input[0]"


@pytest.mark.parametrize("ids", [[7592, 2088], [[7592, 2088]], [[7592], [2088]]])
def test_token_ids_are_refused_by_default(
    minilm_server: LiveServer, ids: list[int] | list[list[int]]
) -> None:
    # Ids of another tokenizer (tiktoken's, from LangChain) decode to other text: refusing them
    # with a message that names the fix beats answering a wrong vector.
    r = httpx.post(f"{minilm_server.url}/v1/embeddings", json={"input": ids, "model": MODEL})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == ("input", "token_ids_not_accepted")
    for hint in ("own vocabulary", "check_embedding_ctx_length=False", "--token-ids accept"):
        assert hint in error["message"]


def test_timing_and_request_id_headers(minilm_server: LiveServer) -> None:
    r = httpx.post(
        f"{minilm_server.url}/v1/embeddings",
        json={"input": "x", "model": MODEL},
        headers={"X-Request-ID": "trace-me-42"},
    )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "trace-me-42"
    for name in ("x-queue-time", "x-inference-time", "x-total-time"):
        assert float(r.headers[name]) >= 0
    assert float(r.headers["x-total-time"]) >= float(r.headers["x-inference-time"])
