"""Hostile input over real HTTP: each gets a clear 4xx in the one error shape, or a correct answer.

Malformed bodies (deep nesting, invalid UTF-8, wrong content types, non-objects, NaN and
Infinity), extreme sizes (chunk_size at and past its bound, thousands of tiny sentences),
blank and odd texts, oversized header values and unknown methods. Never a 500, a hang or a
traceback. A FakeModel server answers most of them (its rows derive from the text, so a
"correct answer" is checked exactly); the real MiniLM takes the cases its tokenizer matters to.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from server.app import create_app
from server.chunking import MAX_CHUNK_SIZE
from tests.support.fake_model import FakeModel, fake_vector
from tests.support.live_server import LiveServer, live_server
from tests.support.settings import make_settings

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}
DEPTH = 100_000  # far past any JSON parser's recursion limit
INFERENCE_ROUTES = ("/predict", "/stream", "/process")


@dataclass
class FakeServer:
    server: LiveServer
    model: FakeModel

    @property
    def url(self) -> str:
        return self.server.url

    def computed(self) -> list[str]:
        return [t for batch in self.model.batches for t in batch]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    model = FakeModel()
    # Room for 4096 chunks a request (the default cap is 2048): the 3000-sentence case is answered.
    settings = make_settings(max_batch_size=32, max_request_chunks=4096, access_log=False)
    with live_server(create_app(settings, model_factory=lambda _: model)) as server:
        yield FakeServer(server, model)


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, object]:
    """`r` is a `status` answer in the one error shape (and, if given, with that code)."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and error["message"]
    assert "Traceback" not in r.text
    if code is not None:
        assert error["code"] == code, error
    return error


def assert_embeds_exactly(text: str, body: dict[str, object]) -> None:
    """A correct FakeModel answer: every chunk is text[start:end] and carries that text's row."""
    predictions = body["predictions"]
    assert isinstance(predictions, list) and body["chunks"] == len(predictions) > 0
    for i, p in enumerate(predictions):
        assert p["index"] == i
        np.testing.assert_array_equal(p["embedding"], fake_vector(text[p["start"] : p["end"]]))


# ---- malformed bodies --------------------------------------------------------------------------
@pytest.mark.parametrize("route", INFERENCE_ROUTES)
@pytest.mark.parametrize(
    "body",
    [
        b'{"text": ' + b"[" * DEPTH + b"]" * DEPTH + b"}",
        b'{"a": ' * DEPTH + b"1" + b"}" * DEPTH,
        b"[" * DEPTH,  # deep and unterminated
    ],
    ids=["nested-arrays", "nested-objects", "unterminated"],
)
def test_deeply_nested_json_is_a_4xx(fake: FakeServer, route: str, body: bytes) -> None:
    r = httpx.post(f"{fake.url}{route}", content=body, headers=JSON, timeout=30)
    assert 400 <= r.status_code < 500
    assert_error(r, r.status_code)


@pytest.mark.parametrize("route", INFERENCE_ROUTES)
def test_invalid_utf8_is_a_4xx(fake: FakeServer, route: str) -> None:
    body = b'{"text": "caf\xe9 \xff\xfe ok", "api_urls": ["http://127.0.0.1:1/x"]}'
    assert_error(httpx.post(f"{fake.url}{route}", content=body, headers=JSON), 400, "invalid_body")
    # Without a JSON content type the body is not parsed at all: a validation error.
    assert_error(httpx.post(f"{fake.url}{route}", content=body), 422, "validation_error")


def test_a_lone_surrogate_escape_is_a_422(fake: FakeServer) -> None:
    r = httpx.post(f"{fake.url}/predict", content=b'{"text": "ok \\ud800 ok"}', headers=JSON)
    assert assert_error(r, 422, "validation_error")["param"] == "body.text"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"text": "hello"}', "text/plain"),
        (b"text=hello", "application/x-www-form-urlencoded"),
        (
            b"--b\r\nContent-Disposition: form-data; name=text\r\n\r\nhello\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
        (b"<text>hello</text>", "application/xml"),
        (b'{"text": "hello"}', "application/json; charset=latin-1; garbage"),
    ],
)
def test_wrong_content_type_is_a_422(fake: FakeServer, content: bytes, content_type: str) -> None:
    r = httpx.post(f"{fake.url}/predict", content=content, headers={"content-type": content_type})
    if r.status_code == 200:  # a JSON content type with odd parameters is still JSON: then right
        assert_embeds_exactly("hello", r.json())
    else:
        assert_error(r, 422, "validation_error")


@pytest.mark.parametrize("body", [b"[]", b'["hello"]', b'"hello"', b"42", b"null", b"true", b""])
def test_a_body_that_is_not_an_object_is_a_422(fake: FakeServer, body: bytes) -> None:
    assert_error(httpx.post(f"{fake.url}/predict", content=body, headers=JSON), 422, "validation_error")


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"5.5", b"9" * 5000])
def test_nan_infinity_and_absurd_numbers_are_a_4xx(fake: FakeServer, number: bytes) -> None:
    for route in ("/predict", "/stream"):
        body = b'{"text": "hello", "chunk_size": ' + number + b"}"
        r = httpx.post(f"{fake.url}{route}", content=body, headers=JSON)
        assert r.status_code in (400, 422)
        assert_error(r, r.status_code)
    r = httpx.post(f"{fake.url}/predict", content=b'{"text": NaN}', headers=JSON)
    assert_error(r, 422, "validation_error")


# ---- sizes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk_size", [MAX_CHUNK_SIZE + 1, 10**30, -(10**30), 0])
def test_chunk_size_out_of_bounds_is_a_422(fake: FakeServer, chunk_size: int) -> None:
    r = httpx.post(f"{fake.url}/predict", json={"text": "hello", "chunk_size": chunk_size})
    assert assert_error(r, 422, "validation_error")["param"] == "body.chunk_size"


def test_chunk_size_at_its_bound_still_keeps_the_token_limit(minilm_server: LiveServer) -> None:
    text = "Convoy keeps every chunk within the model's token limit. " * 400  # ~23k characters
    r = httpx.post(
        f"{minilm_server.url}/predict", json={"text": text, "chunk_size": MAX_CHUNK_SIZE}, timeout=120
    )
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert body["chunks"] > 1  # the token limit, not the character limit, cut it
    assert all(p["tokens"] <= 512 for p in body["predictions"])
    assert body["predictions"][-1]["end"] == len(text.rstrip())


def test_thousands_of_tiny_sentences_get_a_correct_answer(fake: FakeServer) -> None:
    text = " ".join(f"{i:04d}." for i in range(3000))  # chunk_size 5: one sentence per chunk
    r = httpx.post(
        f"{fake.url}/predict",
        json={"text": text, "chunk_size": 5},
        # Admission learns its rate from the one-chunk batches before; 3000 chunks run in full
        # batches and take far less than it guesses. The answer, not admission, is tested here.
        headers={"x-request-timeout": "300"},
        timeout=300,
    )
    assert r.status_code == 200, r.text[:300]
    assert r.json()["chunks"] == 3000
    assert_embeds_exactly(text, r.json())


def test_more_chunks_than_allowed_is_a_4xx_not_a_hang(fake: FakeServer) -> None:
    text = "a. " * 3000  # chunk_size 1: 6000 one-character chunks; cap and queue hold 4096
    r = httpx.post(f"{fake.url}/predict", json={"text": text, "chunk_size": 1}, timeout=60)
    assert "6000 chunks" in assert_error(r, 413, "limit_exceeded")["message"]
    r = httpx.post(f"{fake.url}/stream", json={"text": text, "chunk_size": 1}, timeout=60)
    assert "6000 chunks" in assert_error(r, 413, "limit_exceeded")["message"]  # same limit on /stream
    assert "a" not in fake.computed()  # refused whole: none of it was queued


def test_thousands_of_tiny_sentences_hit_the_default_cap(minilm_server: LiveServer) -> None:
    text = " ".join(f"{i:04d}." for i in range(3000))
    r = httpx.post(f"{minilm_server.url}/predict", json={"text": text, "chunk_size": 5}, timeout=60)
    assert "3000 chunks" in assert_error(r, 413, "limit_exceeded")["message"]


def test_a_thousand_tiny_chunks_on_the_real_model(minilm_server: LiveServer) -> None:
    text = " ".join(f"Word {i}." for i in range(1000))
    r = httpx.post(
        f"{minilm_server.url}/predict",
        json={"text": text, "chunk_size": 10},
        headers={"x-request-timeout": "300"},  # a loaded CI box is slow; admission is not the point here
        timeout=300,
    )
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert body["chunks"] == 1000
    norms = np.linalg.norm([p["embedding"] for p in body["predictions"]], axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-3)


# ---- odd texts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", " ", "\n\n\t ", "\u00a0\u3000\u2028\u2029\u205f", "\r\n" * 1000])
def test_empty_and_whitespace_only_texts_are_a_422(fake: FakeServer, text: str) -> None:
    for route in ("/predict", "/stream"):
        r = httpx.post(f"{fake.url}{route}", json={"text": text})
        assert assert_error(r, 422, "validation_error")["param"] == "body.text"


@pytest.mark.parametrize(
    "text",
    ["\u200b", "\x00", "\ufeff\u200d", "\u0301" * 50, "🙂" * 600, "x" * 20_000, "مرحبا", "a\x00b\x1b[31m"],
)
def test_odd_but_non_blank_texts_get_a_real_answer(minilm_server: LiveServer, text: str) -> None:
    r = httpx.post(f"{minilm_server.url}/predict", json={"text": text}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert body["chunks"] >= 1
    assert np.isfinite(body["aggregate"]["embedding"]).all()
    assert all(p["tokens"] <= 512 for p in body["predictions"])


# ---- headers and methods -----------------------------------------------------------------------
def test_very_long_header_values(fake: FakeServer) -> None:
    huge = "7" * 65_536
    r = httpx.post(f"{fake.url}/predict", json={"text": "hello"}, headers={"x-request-id": huge})
    assert r.status_code == 200 and r.headers["x-request-id"] != huge  # not echoed back
    r = httpx.post(f"{fake.url}/predict", json={"text": "hello"}, headers={"x-anything": "v" * 65_536})
    assert_embeds_exactly("hello", r.json())
    r = httpx.post(f"{fake.url}/predict", json={"text": "hello"}, headers={"x-request-timeout": huge})
    assert assert_error(r, 400, "invalid_input")["param"] == "x-request-timeout"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-0", "1e999", "0x10", "", "soon", "1..0"])
def test_bad_request_timeouts_are_a_400(fake: FakeServer, value: str) -> None:
    r = httpx.post(f"{fake.url}/predict", json={"text": "hello"}, headers={"x-request-timeout": value})
    assert assert_error(r, 400, "invalid_input")["param"] == "x-request-timeout"


def test_a_deadline_no_server_could_meet_is_a_504_and_costs_nothing(fake: FakeServer) -> None:
    assert httpx.post(f"{fake.url}/predict", json={"text": "teach the rate"}).status_code == 200
    r = httpx.post(
        f"{fake.url}/predict", json={"text": "never computed"}, headers={"x-request-timeout": "1e-9"}
    )
    assert_error(r, 504, "deadline_exceeded")
    assert "never computed" not in fake.computed()


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("GET", "/predict"),
        ("PUT", "/predict"),
        ("DELETE", "/predict"),
        ("PATCH", "/stream"),
        ("OPTIONS", "/process"),
        ("TRACE", "/predict"),
        ("POST", "/health"),
        ("DELETE", "/metrics"),
        ("PUT", "/ready"),
    ],
)
def test_unknown_methods_are_a_405_saying_what_is_allowed(fake: FakeServer, method: str, route: str) -> None:
    r = httpx.request(method, f"{fake.url}{route}", json={"text": "hello"})
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"]


def test_unknown_routes_are_a_404(fake: FakeServer) -> None:
    for path in ("/nope", "/predict/extra", "/%00", "/" + "a" * 10_000):
        assert_error(httpx.post(f"{fake.url}{path}", json={"text": "hello"}), 404, "not_found")


def test_the_server_is_still_healthy_afterwards(fake: FakeServer) -> None:
    assert httpx.get(f"{fake.url}/ready").status_code == 200
    r = httpx.post(f"{fake.url}/predict", json={"text": "still fine"})
    assert_embeds_exactly("still fine", r.json())
