"""POST /predict: chunk a document, run every chunk through the model, aggregate."""

from __future__ import annotations

import time

from fastapi import APIRouter
from starlette.responses import Response

from server.backend import chunk_text, gather_results
from server.deps import RuntimeDep
from server.predictions import aggregate, chunk_predictions
from server.responses import FastJSONResponse
from server.schemas import ERROR_RESPONSES, PredictRequest, PredictResponse

router = APIRouter(tags=["inference"])


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=ERROR_RESPONSES,
    summary="Embed or classify a document, chunk by chunk",
)
async def predict(body: PredictRequest, runtime: RuntimeDep) -> Response:
    started = time.perf_counter()
    backend = runtime.backend(body.model)
    chunks = await chunk_text(backend, body.text, body.chunk_size)
    results = await gather_results(backend.submit([c.text for c in chunks]))
    info = backend.info
    payload = {
        "model": info.name,
        "task": info.task,
        "chunks": len(chunks),
        "predictions": chunk_predictions(info, chunks, results),
        "aggregate": aggregate(info, results),
    }
    total_ms = (time.perf_counter() - started) * 1000
    headers = {
        "x-queue-time": f"{max(r.queue_s for r in results) * 1000:.3f}",
        "x-inference-time": f"{max(r.inference_s for r in results) * 1000:.3f}",
        "x-total-time": f"{total_ms:.3f}",
    }
    return FastJSONResponse(payload, headers=headers)
