"""Operational routes: liveness, readiness, served models, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from server.deps import RuntimeDep
from server.errors import NotReady
from server.schemas import ModelCard, ModelsResponse, StatusResponse

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=StatusResponse, summary="Liveness: 200 while the process lives")
async def health() -> StatusResponse:
    return StatusResponse(status="ok")


@router.get(
    "/ready",
    response_model=StatusResponse,
    responses={503: {"description": "Loading, draining, or the model can no longer serve"}},
    summary="Readiness: 200 once the model is warm, 503 while draining",
)
async def ready(runtime: RuntimeDep) -> StatusResponse:
    if not runtime.ready:
        reason = "draining" if runtime.draining else "not ready"
        raise NotReady(f"the server is {reason}")
    return StatusResponse(status="ready")


@router.get("/models", response_model=ModelsResponse, summary="The models this server serves")
async def list_models(runtime: RuntimeDep) -> ModelsResponse:
    cards = []
    for backend in runtime.backends.values():
        info = backend.info
        cards.append(
            ModelCard(
                name=info.name,
                task=info.task,
                device=info.device,
                dtype=info.dtype,
                max_batch_size=runtime.settings_for(info.name).max_batch_size,
                max_tokens=info.max_tokens,
                labels=list(info.labels) or None,
            )
        )
    return ModelsResponse(models=cards)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(runtime: RuntimeDep) -> Response:
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
