"""POST /predict: chunk a document, run every chunk through the model, aggregate."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from server.backend import chunk_text, gather_results
from server.cancellation import request_timeout_s, run_cancellable
from server.deps import RuntimeDep
from server.predictions import aggregate, chunk_predictions
from server.responses import inference_response
from server.schemas import (
    ERROR_RESPONSES,
    MODEL_NOT_FOUND,
    TIMEOUT_HEADER_DOC,
    PredictRequest,
    PredictResponse,
)

router = APIRouter(tags=["inference"])


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses={**ERROR_RESPONSES, **MODEL_NOT_FOUND},
    summary="Embed or classify a document, chunk by chunk",
    openapi_extra=TIMEOUT_HEADER_DOC,
)
async def predict(body: PredictRequest, request: Request, runtime: RuntimeDep) -> Response:
    started = time.perf_counter()
    settings = runtime.settings
    timeout_s = request_timeout_s(request, settings.request_timeout_s, settings.max_request_timeout_s)
    backend = runtime.backend(body.model)
    chunks = await chunk_text(backend, body.text, body.chunk_size, settings)
    futures = backend.submit([c.text for c in chunks], deadline_s=timeout_s)
    results = await run_cancellable(request, gather_results(futures), timeout_s)
    info = backend.info
    payload = {
        "model": info.name,
        "task": info.task,
        "chunks": len(chunks),
        "predictions": chunk_predictions(info, chunks, results),
        "aggregate": aggregate(info, results),
    }
    return inference_response(request, payload, results, started, model=info.name)
