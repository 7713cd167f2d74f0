"""Request limits (413 in the error shape, never a 500), no tracebacks, JSON access log lines."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest

from models.base import Model
from server.app import create_app, load_configured_model
from server.config import Settings
from tests.support.live_server import LiveServer, live_server
from tests.support.settings import make_settings

pytestmark = pytest.mark.integration

KEY = "limits-test-key"
MODEL = "all-MiniLM-L6-v2"
SECRET_DETAIL = "internal detail that must stay in the log"


class DecodeBreaks:
    """The real MiniLM, except that `decode` fails unexpectedly: drives the generic 500 path."""

    def __init__(self, model: Model) -> None:
        self._model = model
        self.info = model.info

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        raise RuntimeError(SECRET_DETAIL)


@pytest.fixture(scope="module")
def limited() -> Iterator[LiveServer]:
    settings = make_settings(
        max_batch_size=4,
        max_body_bytes=4096,
        max_request_chars=2000,
        max_request_chunks=4,
        max_embedding_inputs=3,
        embeddings_overflow="truncate",
        token_ids="accept",  # the generic-500 test reaches the model's decode with token ids
        api_keys=[KEY],
        metrics_require_auth=True,
        log_format="json",
        debug=True,
    )

    def factory(s: Settings) -> Model:
        return DecodeBreaks(load_configured_model(s))  # type: ignore[return-value]

    with live_server(create_app(settings, model_factory=factory)) as server:
        yield server


@pytest.fixture(scope="module")
def http(limited: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=limited.url, headers={"Authorization": f"Bearer {KEY}"}) as client:
        yield client


def assert_413(r: httpx.Response, code: str, param: str | None = None) -> None:
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


def test_body_over_the_limit_with_content_length(http: httpx.Client) -> None:
    r = http.post("/v1/embeddings", json={"input": "x" * 5000, "model": MODEL})
    assert "content-length" in r.request.headers
    assert_413(r, "payload_too_large")


def test_chunked_body_over_the_limit_without_content_length(http: httpx.Client) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"input": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'", "model": "all-MiniLM-L6-v2"}'

    r = http.post("/v1/embeddings", content=body(), headers={"Content-Type": "application/json"})
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.request.headers
    assert_413(r, "payload_too_large")
    assert r.headers["x-request-id"]


def test_chunked_body_under_the_limit_passes(http: httpx.Client) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"input": "hello", '
        yield b'"model": "all-MiniLM-L6-v2"}'

    r = http.post("/v1/embeddings", content=body(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def test_characters_per_request(http: httpx.Client) -> None:
    assert_413(http.post("/predict", json={"text": "word " * 500}), "limit_exceeded", "text")
    inputs = ["word " * 300, "word " * 300]
    assert_413(http.post("/v1/embeddings", json={"input": inputs, "model": MODEL}), "limit_exceeded", "input")
    assert_413(http.post("/embed", json={"inputs": inputs}), "limit_exceeded", "inputs")


def test_chunks_per_request(http: httpx.Client) -> None:
    r = http.post("/predict", json={"text": "one. two. three. four. five.", "chunk_size": 5})
    assert_413(r, "limit_exceeded", "chunk_size")
    assert http.post("/predict", json={"text": "one. two. three.", "chunk_size": 5}).status_code == 200
    # The same limits hold on every route that chunks a document.
    r = http.post("/stream", json={"text": "one. two. three. four. five.", "chunk_size": 5})
    assert_413(r, "limit_exceeded", "chunk_size")
    assert_413(http.post("/stream", json={"text": "word " * 500}), "limit_exceeded", "text")
    body = {"text": "one. two. three. four. five.", "chunk_size": 5, "api_urls": ["http://127.0.0.1:9/"]}
    assert_413(http.post("/process", json=body), "limit_exceeded", "chunk_size")


def test_inputs_per_embeddings_request(http: httpx.Client) -> None:
    four = ["a", "b", "c", "d"]
    assert_413(http.post("/v1/embeddings", json={"input": four, "model": MODEL}), "limit_exceeded", "input")
    assert_413(http.post("/embed", json={"inputs": four}), "limit_exceeded", "inputs")
    assert http.post("/embed", json={"inputs": four[:3]}).status_code == 200


def test_truncate_setting_lets_over_long_inputs_through(http: httpx.Client) -> None:
    r = http.post("/v1/embeddings", json={"input": "word " * 300, "model": MODEL})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] == 256  # cut at MiniLM's limit, specials included


def test_metrics_can_be_closed(limited: LiveServer, http: httpx.Client) -> None:
    assert httpx.get(f"{limited.url}/metrics").status_code == 401
    assert http.get("/metrics").status_code == 200
    assert httpx.get(f"{limited.url}/health").status_code == 200


def test_unexpected_errors_are_a_generic_500_even_in_debug(http: httpx.Client) -> None:
    r = http.post("/v1/embeddings", json={"input": [[7592, 2088]], "model": MODEL})
    assert r.status_code == 500
    assert r.json()["error"] == {
        "message": "internal server error",
        "type": "server_error",
        "param": None,
        "code": "internal_error",
    }
    assert SECRET_DETAIL not in r.text and "Traceback" not in r.text
    assert r.headers["x-request-id"]


def test_json_access_log_lines(http: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="convoy.access"):
        ok = http.post(
            "/v1/embeddings", json={"input": ["a", "b"], "model": MODEL}, headers={"X-Request-ID": "log-me-1"}
        )
        big = http.post("/embed", json={"inputs": "x" * 5000}, headers={"X-Request-ID": "log-me-2"})
    assert ok.status_code == 200 and big.status_code == 413
    lines = {}
    for record in caplog.records:
        if record.name == "convoy.access":
            entry = json.loads(record.getMessage())
            lines[entry["request_id"]] = entry
    first = lines["log-me-1"]
    assert first["route"] == "/v1/embeddings" and first["status"] == 200
    assert first["model"] == MODEL and first["chunks"] == 2 and first["latency_ms"] > 0
    assert lines["log-me-2"]["status"] == 413 and lines["log-me-2"]["chunks"] is None


# ---- no route ever answers with a traceback, or a 500, for bad input ----------------------------
BAD_BODIES: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("malformed", b'{"text": '),
    ("not-an-object", b"[1, 2, 3]"),
    ("wrong-types", b'{"text": 5, "input": {"a": 1}, "inputs": null, "model": 3, "chunk_size": "x"}'),
    (
        "huge-numbers",
        b'{"text": "a", "chunk_size": 1e308, "input": [1e400], "dimensions": 99999999999999999999}',
    ),
    ("bad-utf8", b'{"text": "\xff\xfe"}'),
    ("nested", b'{"input": ' + b"[" * 500 + b"]" * 500 + b"}"),
]


def test_no_route_answers_bad_input_with_a_traceback_or_500(minilm_server: LiveServer) -> None:
    json_type = {"Content-Type": "application/json"}
    with httpx.Client(base_url=minilm_server.url) as client:
        paths: dict[str, dict[str, Any]] = client.get("/openapi.json").json()["paths"]
        assert {"/v1/embeddings", "/embed", "/", "/predict", "/health"} <= set(paths)
        for template, operations in paths.items():
            path = template.replace("{model}", "no-such-model")
            for method in sorted({m.upper() for m in operations} | {"PUT", "DELETE"}):
                for _name, body in BAD_BODIES:
                    r = client.request(method, path, content=body, headers=json_type)
                    assert r.status_code < 500, (method, path, _name, r.text)
                    assert "Traceback" not in r.text and 'File "' not in r.text
                    if r.status_code >= 400:
                        assert set(r.json()["error"]) >= {"message", "type", "param", "code"}
        for path in ("/nope", "/v1/nope", "/v1/embeddings/x"):
            r = client.get(path)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
