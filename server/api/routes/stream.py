"""POST /stream: /predict's body, answered as Server-Sent Events, one per chunk as it completes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from server.api.cancellation import request_timeout_s
from server.api.deps import RuntimeDep
from server.api.inputs import chunk_for_model, refuse_rerank, resolve_prompt, submit
from server.api.schemas import (
    ERROR_RESPONSES,
    MODEL_NOT_FOUND,
    STREAM_EVENT_SCHEMA,
    TIMEOUT_HEADER_DOC,
    PredictRequest,
    json_errors,
)
from server.api.streaming import ChunkProgress, EventStreamResponse, sse_frames

router = APIRouter(tags=["inference"])


@router.post(
    "/stream",
    response_class=EventStreamResponse,
    responses={
        **json_errors({**ERROR_RESPONSES, **MODEL_NOT_FOUND}),
        200: {
            "content": {"text/event-stream": {"schema": STREAM_EVENT_SCHEMA}},
            "description": "`event: chunk` per chunk as it completes, then `event: done` with the totals; "
            "`event: error` (code `deadline_exceeded`) instead of `done` if the deadline passes first",
        },
    },
    summary="Embed or classify a document, streaming each chunk's result as it is ready",
    openapi_extra=TIMEOUT_HEADER_DOC,
)
async def stream(body: PredictRequest, request: Request, runtime: RuntimeDep) -> Response:
    settings = runtime.settings
    timeout_s = request_timeout_s(request, settings)
    backend = runtime.backend(body.model)
    refuse_rerank(backend.info, "/stream")
    prompt = resolve_prompt(backend.info, body.prompt_name)
    chunked = await chunk_for_model(body.text, body.chunk_size, settings, backend, prompt=prompt)
    # Submitted before the response starts, so a full queue is still a plain 503.
    pending = submit(backend, chunked.texts, timeout_s, prompt=prompt, encoded=chunked.encoded)
    progress = ChunkProgress(backend.info, chunked.chunks, pending)
    return EventStreamResponse(sse_frames(progress), on_close=progress.cancel)
