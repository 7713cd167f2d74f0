"""OpenAI-compatible routes: POST /v1/embeddings and GET /v1/models (thin; logic in embeddings.py)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from server.api.compat import check_dimensions, embedding_rows, require_task, run_inputs, to_base64
from server.api.compat_schemas import EmbeddingsRequest, EmbeddingsResponse, ModelList, ModelObject
from server.api.deps import RuntimeDep
from server.api.inputs import resolve_prompt
from server.api.responses import inference_response
from server.api.schemas import ERROR_RESPONSES, MODEL_NOT_FOUND, TIMEOUT_HEADER_DOC, ErrorResponse

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post(
    "/embeddings",
    response_model=EmbeddingsResponse,
    responses={**ERROR_RESPONSES, **MODEL_NOT_FOUND},
    summary="OpenAI-compatible embeddings",
    openapi_extra=TIMEOUT_HEADER_DOC,
)
async def create_embeddings(body: EmbeddingsRequest, runtime: RuntimeDep, request: Request) -> Response:
    started = time.perf_counter()
    backend = runtime.backend(body.model)
    info = backend.info
    require_task(info, "embed", "/v1/embeddings")
    check_dimensions(info, body.dimensions)
    truncate = runtime.settings.embeddings_overflow == "truncate"
    results = await run_inputs(
        backend,
        body.input,
        runtime.settings,
        request,
        truncate=truncate,
        param="input",
        overflow_hint="shorten it (this server refuses over-long inputs: embeddings_overflow=reject)",
        prompt=resolve_prompt(info, body.prompt_name),
    )
    rows = embedding_rows(results, dimensions=body.dimensions, model_normalized=info.normalized)
    encode = to_base64 if body.encoding_format == "base64" else None
    tokens = sum(r.tokens for r in results)
    payload = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(row) if encode else row}
            for i, row in enumerate(rows)
        ],
        "model": info.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return inference_response(request, payload, results, started, model=info.name)


@router.get("/models", response_model=ModelList, summary="OpenAI-compatible list of served models")
async def list_models(runtime: RuntimeDep) -> ModelList:
    return ModelList(data=[ModelObject(id=name, created=runtime.created) for name in runtime.backends])


@router.get(
    "/models/{model:path}",
    response_model=ModelObject,
    responses={404: {"model": ErrorResponse, "description": "Not served here"}},
    summary="OpenAI-compatible description of one served model",
)
async def retrieve_model(model: str, runtime: RuntimeDep) -> ModelObject:
    return ModelObject(id=runtime.backend(model).info.name, created=runtime.created)
