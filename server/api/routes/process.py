"""POST /process: fan a document's chunks out to client-named (allowlisted) upstream URLs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from server.api.cancellation import request_timeout_s, run_cancellable
from server.api.deps import RuntimeDep
from server.api.inputs import chunk_text
from server.api.responses import FastJSONResponse
from server.api.schemas import (
    ERROR_RESPONSES,
    TIMEOUT_HEADER_DOC,
    ErrorResponse,
    ProcessRequest,
    ProcessResponse,
)
from server.remote.client import RemoteResult

router = APIRouter(tags=["remote"])


@router.post(
    "/process",
    response_model=ProcessResponse,
    responses={
        **ERROR_RESPONSES,
        403: {"model": ErrorResponse, "description": "A URL is not in CONVOY_REMOTE_ALLOW"},
    },
    summary="Send each chunk to a remote API (round-robin); one result per chunk",
    openapi_extra=TIMEOUT_HEADER_DOC,
)
async def process(body: ProcessRequest, request: Request, runtime: RuntimeDep) -> Response:
    timeout_s = request_timeout_s(request, runtime.settings)
    chunks = await chunk_text(body.text, body.chunk_size, runtime.settings, what="process")
    # Upstreams are not a batched backend: each chunk is its own call with its own time budget
    # (remote_timeout_s); the request's deadline and its client still bound the whole.
    calls = runtime.upstreams.process([c.text for c in chunks], body.api_urls)
    results = await run_cancellable(request, calls, timeout_s)
    return FastJSONResponse(process_summary(results))


def process_summary(results: Sequence[RemoteResult]) -> dict[str, Any]:
    """The /process answer: totals, then one entry per chunk in chunk order."""
    ok = sum(r.success for r in results)
    return {
        "total": len(results),
        "successful": ok,
        "failed": len(results) - ok,
        "results": [
            {
                "index": r.index,
                "url": r.url,
                "success": r.success,
                "result": r.result,
                "error": r.error,
                "latency_ms": round(r.latency_ms, 3),
            }
            for r in results
        ],
    }
