"""POST /process: fan a document's chunks out to client-named (allowlisted) upstream URLs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from server.cancellation import cancel_on_disconnect
from server.chunking import split_text
from server.deps import RuntimeDep
from server.errors import InvalidInput
from server.limits import check_chars, check_chunks
from server.remote import process_summary
from server.remote_schemas import ProcessRequest, ProcessResponse
from server.responses import FastJSONResponse
from server.schemas import ERROR_RESPONSES, ErrorResponse

router = APIRouter(tags=["remote"])


@router.post(
    "/process",
    response_model=ProcessResponse,
    responses={
        **ERROR_RESPONSES,
        403: {"model": ErrorResponse, "description": "A URL is not in CONVOY_REMOTE_ALLOW"},
    },
    summary="Send each chunk to a remote API (round-robin); one result per chunk",
)
async def process(body: ProcessRequest, request: Request, runtime: RuntimeDep) -> Response:
    remote = runtime.remote_backend()
    check_chars(runtime.settings, len(body.text), param="text")
    chunks = split_text(body.text, body.chunk_size)
    if not chunks:
        raise InvalidInput("text has no content to process", param="text")
    check_chunks(runtime.settings, len(chunks), param="chunk_size")
    results = await cancel_on_disconnect(request, remote.process([c.text for c in chunks], body.api_urls))
    return FastJSONResponse(process_summary(results))
