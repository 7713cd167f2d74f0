"""convoy bench counts every wrong answer, by kind, against a real loopback server that misbehaves."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI, Request
from starlette.responses import Response

from server.bench.report import read_json
from server.cli import main
from tests.support.live_server import LiveServer, live_server

pytestmark = pytest.mark.integration

# One cycle of what the faulty server answers; counts over whole cycles are exact whatever the
# order in which concurrent requests arrive.
PREDICT_CYCLE = ("ok", "http_500", "ok", "not_json", "ok", "short", "ok", "http_503", "no_tokens", "hang")
EMBED_CYCLE = ("ok", "few_rows", "ok", "http_500", "bad_index")
PROCESS_CYCLE = ("ok", "failed_chunk", "ok", "ok")


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json", headers=headers)


def faulty_app() -> FastAPI:
    """Answers by a fixed cycle: correct bodies, 5xx, non-JSON, wrong shapes, and one that hangs."""
    app = FastAPI()
    counters = {name: itertools.count() for name in ("predict", "embed", "process")}

    @app.get("/ready")
    async def ready() -> Response:
        return _json({"status": "ready"})

    @app.get("/models")
    async def models() -> Response:
        return _json({"models": [{"name": "faulty", "max_batch_size": 8}]})

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        body = orjson.loads(await request.body())
        assert set(body) == {"text", "chunk_size"}
        kind = PREDICT_CYCLE[next(counters["predict"]) % len(PREDICT_CYCLE)]
        row = {"index": 0, "start": 0, "end": 4, "tokens": 3, "embedding": [0.5, 0.5]}
        good = {"chunks": 2, "predictions": [row, row], "aggregate": {"embedding": [0.5, 0.5]}}
        if kind == "ok":
            return _json(good, headers={"x-queue-time": "1.5", "x-inference-time": "4.0"})
        if kind.startswith("http_"):
            return _json({"error": {"message": "nope"}}, status=int(kind[5:]))
        if kind == "not_json":
            return Response(b"<html>gateway</html>", media_type="text/html")
        if kind == "short":
            return _json({**good, "predictions": [row]})
        if kind == "no_tokens":
            return _json({**good, "predictions": [row, {"index": 1, "embedding": [0.1]}]})
        # "hang": answer nothing until the client gives up and closes the connection.
        while (await request.receive())["type"] != "http.disconnect":
            pass
        return Response(status_code=499)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = orjson.loads(await request.body())
        assert body["model"] == "faulty"
        assert request.headers["authorization"] == "Bearer sesame"  # --api-key reaches every request
        n = len(body["input"]) if isinstance(body["input"], list) else 1
        kind = EMBED_CYCLE[next(counters["embed"]) % len(EMBED_CYCLE)]
        rows = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2]} for i in range(n)]
        if kind == "few_rows":
            rows = rows[:-1]
        elif kind == "bad_index":
            rows = [{**r, "index": 7} for r in rows]
        elif kind == "http_500":
            return _json({"error": {"message": "boom"}}, status=500)
        return _json(
            {"object": "list", "data": rows, "usage": {"prompt_tokens": 5 * n, "total_tokens": 5 * n}}
        )

    @app.post("/process")
    async def process(request: Request) -> Response:
        body = orjson.loads(await request.body())
        assert body["api_urls"] == ["http://upstream.invalid/"]
        kind = PROCESS_CYCLE[next(counters["process"]) % len(PROCESS_CYCLE)]
        results = [{"index": i, "success": not (kind == "failed_chunk" and i == 1)} for i in range(3)]
        return _json({"total": 3, "successful": 3, "failed": 0, "results": results})

    return app


@pytest.fixture(scope="module")
def faulty_server() -> Iterator[LiveServer]:
    with live_server(faulty_app()) as server:
        yield server


def _bench(tmp_path: Path, *argv: str) -> dict[str, Any]:
    out = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as done:
        main(["bench", "--warmup", "0", "--no-progress", "--json", str(out), *argv])
    assert done.value.code == 0
    return read_json(out)


def test_closed_loop_counts_each_kind_of_wrong_answer(faulty_server: LiveServer, tmp_path: Path) -> None:
    doc = _bench(
        tmp_path, "--url", faulty_server.url, "--concurrency", "4", "--requests", "50", "--timeout", "0.3"
    )
    (level,) = doc["levels"]
    assert level.errors == {"bad_json": 5, "bad_shape": 10, "http_500": 5, "http_503": 5, "timeout": 5}
    assert level.requests == 20
    # Throughput and latency come from the 20 correct answers only: 2 chunks of 3 tokens each.
    assert level.chunks_per_s * level.elapsed_s == pytest.approx(40)
    assert level.tokens_per_s * level.elapsed_s == pytest.approx(120)
    assert level.latency_ms["max"] < 300  # the hung requests are not in the latency figures
    assert level.server_queue_ms_p50 == 1.5 and level.server_inference_ms_p50 == 4.0
    assert "not JSON" in level.error_examples["bad_json"]


def test_open_loop_counts_the_same(faulty_server: LiveServer, tmp_path: Path) -> None:
    doc = _bench(
        tmp_path, "--url", faulty_server.url, "--rate", "400", "--requests", "20", "--timeout", "0.3"
    )
    (level,) = doc["levels"]
    assert level.mode == "open" and level.label == "r=400/s"
    assert level.requests + level.error_total == 20
    assert level.errors == {"bad_json": 2, "bad_shape": 4, "http_500": 2, "http_503": 2, "timeout": 2}


def test_embeddings_route_checks_rows_and_indexes(faulty_server: LiveServer, tmp_path: Path) -> None:
    doc = _bench(
        tmp_path,
        *("--url", faulty_server.url, "--route", "/v1/embeddings", "--profile", "long"),
        *("--chunk-size", "500", "--corpus-size", "20", "--concurrency", "3", "--requests", "15"),
        *("--api-key", "sesame"),
    )
    (level,) = doc["levels"]
    assert level.errors == {"bad_shape": 6, "http_500": 3}
    assert level.requests == 6
    assert level.tokens_per_s * level.elapsed_s == pytest.approx(5 * level.chunks_per_s * level.elapsed_s)


def test_process_route_counts_failed_chunks(faulty_server: LiveServer, tmp_path: Path) -> None:
    doc = _bench(
        tmp_path,
        *("--url", faulty_server.url, "--route", "/process", "--api-url", "http://upstream.invalid/"),
        *("--concurrency", "2", "--requests", "8"),
    )
    (level,) = doc["levels"]
    assert level.errors == {"upstream_failed": 2} and level.requests == 6
    assert level.tokens_per_s is None


def test_unreachable_server_fails_fast_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with live_server(faulty_app()) as server:
        url = server.url
    with pytest.raises(SystemExit) as done:  # the port is closed now
        main(["bench", "--url", url, "--requests", "1", "--warmup", "0"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"convoy bench: error: cannot reach {url}") and "\n" not in err
