"""JSON responses rendered by orjson, and the timing headers every inference response carries."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from server.batching.backend import ItemResult


class FastJSONResponse(JSONResponse):
    """orjson writes numpy float arrays natively and fast."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class InferenceResponse(FastJSONResponse):
    """An inference answer: orjson body, and the header list built directly (Starlette's header
    normalisation costs more than the rest of building a small answer)."""

    def __init__(self, content: Any, raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = 200
        self.background = None
        self.body = self.render(content)
        self.raw_headers = [
            (b"content-length", str(len(self.body)).encode()),
            (b"content-type", b"application/json"),
            *raw_headers,
        ]


def timing_headers(results: Sequence[ItemResult], started: float) -> list[tuple[bytes, bytes]]:
    """text-embeddings-inference's timing headers, in milliseconds (`convoy bench` reads them).

    A request's chunks share batches, so its queue and inference times are the slowest chunk's;
    `started` is the `time.perf_counter()` taken when the handler began.
    """
    if len(results) == 1:
        queue_s, inference_s = results[0].queue_s, results[0].inference_s
    else:
        queue_s = max((r.queue_s for r in results), default=0.0)
        inference_s = max((r.inference_s for r in results), default=0.0)
    total_s = time.perf_counter() - started
    return [
        (b"x-queue-time", b"%.3f" % (queue_s * 1000)),
        (b"x-inference-time", b"%.3f" % (inference_s * 1000)),
        (b"x-total-time", b"%.3f" % (total_s * 1000)),
    ]


def note_inference(conn: HTTPConnection, *, model: str, chunks: int) -> None:
    """Record what the request computed, for the JSON access log (server/middleware.py)."""
    state = conn.scope.setdefault("state", {})
    state["model"] = model
    state["chunks"] = chunks


def inference_response(
    conn: HTTPConnection,
    content: Any,
    results: Sequence[ItemResult],
    started: float,
    *,
    model: str,
) -> FastJSONResponse:
    """The JSON answer of an inference route: timing headers set, access-log fields noted."""
    note_inference(conn, model=model, chunks=len(results))
    return InferenceResponse(content, timing_headers(results, started))
