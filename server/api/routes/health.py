"""Operational routes: liveness, readiness, served models, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from server.api.deps import RequireAuth, RuntimeDep, authenticate_metrics
from server.api.model_math import model_math
from server.api.schemas import UNAUTHORIZED, ErrorResponse, ModelCard, ModelsResponse, StatusResponse
from server.errors import ModelUnavailable, NotReady

router = APIRouter(tags=["operations"])


@router.get(
    "/health",
    response_model=StatusResponse,
    responses={503: {"description": "The model can no longer serve: restart the process"}},
    summary="Liveness, as text-embeddings-inference: 200 while the model can serve",
)
async def health(runtime: RuntimeDep) -> StatusResponse:
    # The lifespan loads the model before the socket accepts, so a 200 here means loaded. Unlike
    # /ready it stays 200 while draining: the process is stopping on purpose, not broken. After a
    # device failure, a real one-token forward pass decides (as text-embeddings-inference does).
    if not runtime.draining:
        for backend in runtime.backends.values():
            if not backend.healthy and not await backend.probe():
                raise ModelUnavailable("the model can no longer serve; restart the server")
    return StatusResponse(status="ok")


@router.get(
    "/ready",
    response_model=StatusResponse,
    responses={
        503: {"model": ErrorResponse, "description": "Loading, draining, or the model can no longer serve"}
    },
    summary="Readiness: 200 once the model is warm, 503 while draining",
)
async def ready(runtime: RuntimeDep) -> StatusResponse:
    if not runtime.ready:
        reason = "draining" if runtime.draining else "not ready"
        raise NotReady(f"the server is {reason}")
    return StatusResponse(status="ready")


@router.get(
    "/models",
    response_model=ModelsResponse,
    dependencies=[RequireAuth],
    responses=UNAUTHORIZED,
    summary="The models this server serves",
)
async def list_models(runtime: RuntimeDep) -> ModelsResponse:
    cards = []
    for backend in runtime.backends.values():
        info = backend.info
        cards.append(
            ModelCard(
                **model_math(info),
                name=info.name,
                task=info.task,
                device=info.device,
                dtype=info.dtype,
                max_batch_size=runtime.settings_for(info.name).max_batch_size or 0,
                max_tokens=info.max_tokens,
                labels=list(info.labels) or None,
            )
        )
    return ModelsResponse(models=cards)


@router.get(
    "/metrics",
    summary="Prometheus metrics (open unless metrics_require_auth)",
    response_class=Response,
    dependencies=[Depends(authenticate_metrics)],
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **UNAUTHORIZED},
)
async def metrics(runtime: RuntimeDep) -> Response:
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
