"""POST /predict: chunk a document, run every chunk through the model, aggregate."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from server.backend import Backend, gather_results
from server.chunking import Chunk, split_text
from server.deps import RuntimeDep
from server.errors import InvalidInput
from server.limits import check_chars, check_chunks
from server.predictions import aggregate, chunk_predictions
from server.responses import inference_response
from server.schemas import ERROR_RESPONSES, PredictRequest, PredictResponse

router = APIRouter(tags=["inference"])


async def chunk_text(backend: Backend, text: str, chunk_size: int) -> list[Chunk]:
    """Split off the event loop when the tokenizer may be consulted (long texts)."""
    max_tokens = backend.info.max_tokens
    if len(text) <= max_tokens or chunk_size <= max_tokens:
        chunks = split_text(text, chunk_size)
    else:
        chunks = await asyncio.to_thread(
            split_text, text, chunk_size, max_tokens=max_tokens, count_tokens=backend.count_tokens
        )
    if not chunks:
        raise InvalidInput("text has no content to predict on", param="text")
    return chunks


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=ERROR_RESPONSES,
    summary="Embed or classify a document, chunk by chunk",
)
async def predict(body: PredictRequest, runtime: RuntimeDep, request: Request) -> Response:
    started = time.perf_counter()
    backend = runtime.backend(body.model)
    check_chars(runtime.settings, len(body.text), param="text")
    chunks = await chunk_text(backend, body.text, body.chunk_size)
    check_chunks(runtime.settings, len(chunks), param="chunk_size")
    results = await gather_results(backend.submit([c.text for c in chunks]))
    info = backend.info
    payload = {
        "model": info.name,
        "task": info.task,
        "chunks": len(chunks),
        "predictions": chunk_predictions(info, chunks, results),
        "aggregate": aggregate(info, results),
    }
    return inference_response(request, payload, results, started, model=info.name)
