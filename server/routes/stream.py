"""POST /stream: /predict's body, answered as Server-Sent Events, one per chunk as it completes."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from server.backend import chunk_text
from server.deps import RuntimeDep
from server.remote_schemas import STREAM_EVENT_SCHEMA
from server.schemas import ERROR_RESPONSES, MODEL_NOT_FOUND, PredictRequest, json_errors
from server.streaming import ChunkProgress, EventStreamResponse, sse_frames

router = APIRouter(tags=["inference"])


@router.post(
    "/stream",
    response_class=EventStreamResponse,
    responses={
        **json_errors({**ERROR_RESPONSES, **MODEL_NOT_FOUND}),
        200: {
            "content": {"text/event-stream": {"schema": STREAM_EVENT_SCHEMA}},
            "description": "`event: chunk` per chunk as it completes, then `event: done` with the totals",
        },
    },
    summary="Embed or classify a document, streaming each chunk's result as it is ready",
)
async def stream(body: PredictRequest, runtime: RuntimeDep) -> Response:
    backend = runtime.backend(body.model)
    chunks = await chunk_text(backend, body.text, body.chunk_size, runtime.settings)
    # Submitted before the response starts, so a full queue is still a plain 503.
    progress = ChunkProgress(backend.info, chunks, backend.submit([c.text for c in chunks]))
    return EventStreamResponse(sse_frames(progress), on_close=progress.cancel)
