"""Rerank routes: text-embeddings-inference's POST /rerank, POST /v1/rerank (Cohere v1 / Jina) and
POST /v2/rerank (Cohere v2, where `cohere.ClientV2(base_url=...).rerank` posts)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from server.api.compat_schemas import (
    RerankRequest,
    RerankResponse,
    TEIRank,
    TEIRerankRequest,
)
from server.api.deps import RuntimeDep
from server.api.rerank import rerank
from server.api.responses import inference_response
from server.api.schemas import ERROR_RESPONSES, MODEL_NOT_FOUND, TIMEOUT_HEADER_DOC
from server.runtime import Runtime

router = APIRouter(tags=["rerank"])


@router.post(
    "/rerank",
    response_model=list[TEIRank],
    response_model_exclude_none=True,
    responses=ERROR_RESPONSES,
    summary="TEI-compatible rerank: every text scored against the query, best first",
    openapi_extra=TIMEOUT_HEADER_DOC,
)
async def tei_rerank(body: TEIRerankRequest, runtime: RuntimeDep, request: Request) -> Response:
    started = time.perf_counter()
    backend = runtime.backend()
    ranking = await rerank(
        request, backend, body.query, body.texts, runtime.settings, raw_scores=body.raw_scores, param="texts"
    )
    payload = [
        {
            "index": d.index,
            "score": d.score,
            **({"text": body.texts[d.index]} if body.return_text else {}),
            "start": d.start,
            "end": d.end,
        }
        for d in ranking.documents
    ]
    return inference_response(request, payload, ranking.results, started, model=backend.info.name)


# Cohere's two API versions: one body, one answer (v2 echoes no documents).
_COHERE_ROUTE: dict[str, Any] = {
    "response_model": RerankResponse,
    "response_model_exclude_none": True,
    "responses": {**ERROR_RESPONSES, **MODEL_NOT_FOUND},
    "openapi_extra": TIMEOUT_HEADER_DOC,
}


@router.post(
    "/v1/rerank",
    summary="Cohere v1 / Jina-compatible rerank: the best `top_n` documents for the query",
    **_COHERE_ROUTE,
)
async def v1_rerank(body: RerankRequest, runtime: RuntimeDep, request: Request) -> Response:
    return await _cohere_rerank(body, runtime, request, return_documents=body.return_documents)


@router.post(
    "/v2/rerank",
    summary="Cohere v2-compatible rerank: the best `top_n` documents, by index (v2 echoes no documents)",
    **_COHERE_ROUTE,
)
async def v2_rerank(body: RerankRequest, runtime: RuntimeDep, request: Request) -> Response:
    return await _cohere_rerank(body, runtime, request, return_documents=False)


async def _cohere_rerank(
    body: RerankRequest, runtime: Runtime, request: Request, *, return_documents: bool
) -> Response:
    started = time.perf_counter()
    backend = runtime.backend(body.model)
    texts = [d if isinstance(d, str) else d.text for d in body.documents]
    ranking = await rerank(request, backend, body.query, texts, runtime.settings)
    kept = ranking.documents[: body.top_n] if body.top_n is not None else ranking.documents
    payload = {
        "id": request.scope.get("state", {}).get("request_id"),
        "model": backend.info.name,
        "results": [
            {
                "index": d.index,
                "relevance_score": d.score,
                **({"document": {"text": texts[d.index]}} if return_documents else {}),
                "start": d.start,
                "end": d.end,
            }
            for d in kept
        ],
        "usage": {"total_tokens": ranking.tokens},
    }
    return inference_response(request, payload, ranking.results, started, model=backend.info.name)
