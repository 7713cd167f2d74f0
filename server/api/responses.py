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


def timing_headers(results: Sequence[ItemResult], started: float) -> dict[str, str]:
    """text-embeddings-inference's timing headers, in milliseconds (`convoy bench` reads them).

    A request's chunks share batches, so its queue and inference times are the slowest chunk's;
    `started` is the `time.perf_counter()` taken when the handler began.
    """
    queue_s = max((r.queue_s for r in results), default=0.0)
    inference_s = max((r.inference_s for r in results), default=0.0)
    return {
        "x-queue-time": f"{queue_s * 1000:.3f}",
        "x-inference-time": f"{inference_s * 1000:.3f}",
        "x-total-time": f"{(time.perf_counter() - started) * 1000:.3f}",
    }


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
    return FastJSONResponse(content, headers=timing_headers(results, started))
