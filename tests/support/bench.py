"""For the bench tests: an app that answers by a fixed cycle of right and wrong answers; a bench runner."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI, Request
from starlette.responses import Response

from server.bench.report import read_json
from server.cli import main


def run_bench(tmp_path: Path, *argv: str) -> dict[str, Any]:
    """`convoy bench ARGV` without warm-up or bar; its JSON report, levels as LevelSummary."""
    out = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as done:
        main(["bench", "--warmup", "0", "--no-progress", "--json", str(out), *argv])
    assert done.value.code == 0
    return read_json(out)


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
        assert request.headers["content-type"] == "application/json"  # FastAPI parses JSON only then
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
