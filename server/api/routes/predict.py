"""POST /predict: chunk a document, run every chunk through the model, aggregate."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from server.api.cancellation import request_timeout_s
from server.api.deps import RuntimeDep
from server.api.inputs import chunk_for_model, infer, refuse_rerank, resolve_prompt
from server.api.predictions import aggregate, chunk_predictions
from server.api.responses import inference_response
from server.api.schemas import (
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
    timeout_s = request_timeout_s(request, settings)
    backend = runtime.backend(body.model)
    info = backend.info
    refuse_rerank(info, "/predict")
    prompt = resolve_prompt(info, body.prompt_name)
    chunked = await chunk_for_model(body.text, body.chunk_size, settings, backend, prompt=prompt)
    chunks = chunked.chunks
    results = await infer(request, backend, chunked.texts, timeout_s, prompt=prompt, encoded=chunked.encoded)
    payload = {
        "model": info.name,
        "task": info.task,
        "chunks": len(chunks),
        "predictions": chunk_predictions(info, chunks, results),
        "aggregate": aggregate(info, results),
    }
    return inference_response(request, payload, results, started, model=info.name)
