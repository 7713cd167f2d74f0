"""create_app(settings): the FastAPI app, its lifespan (load, warm, batch; drain on exit), routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from pydantic import BaseModel

from models.base import Model
from server import __version__
from server.api.compat_schemas import EmbeddingsRequest, TEIRequest
from server.api.deps import RequireAuth
from server.api.error_handlers import install_error_handlers
from server.api.fast_path import ConvoyApp, FastPath, Handler
from server.api.middleware import BodyLimitMiddleware, RequestContextMiddleware, install_cors
from server.api.responses import FastJSONResponse
from server.api.routes import health, openai, predict, process, rerank, stream, tei, ws
from server.api.schemas import UNAUTHORIZED, PredictRequest
from server.batching.backend import Backend
from server.batching.batched import CPU_BATCH_SIZE, GPU_BATCH_SIZE, BatchedBackend, batching_settings
from server.config import Settings
from server.metrics import Metrics
from server.multi_model import ModelsFileError, served_models
from server.remote.backends import build_remote_backend
from server.remote.client import UpstreamClient
from server.runtime import Runtime
from server.security import Authenticator, log_auth_mode

if TYPE_CHECKING:
    from models.spec import ModelSpec

log = logging.getLogger("convoy")

ModelFactory = Callable[[Settings], Model]
# The served models' Settings and the app's Metrics -> started backends by name, and each one's
# Settings (start_local_backends' answer); `--workers N` front-ends connect to the engine so.
BackendsFactory = Callable[
    [list[Settings], Metrics], Awaitable[tuple[dict[str, Backend], dict[str, Settings]]]
]


def load_configured_model(settings: Settings) -> Model:
    """The default factory: the model named by the settings, loaded and warmed up (blocking)."""
    from models.loader import load_model

    return load_model(model_spec(settings))


def model_spec(settings: Settings) -> ModelSpec:
    """What `settings` ask of the model loader (also checked cheaply by the CLI before serving)."""
    from models.spec import ModelSpec

    return ModelSpec(
        source=settings.model,
        task=settings.task,
        device=settings.device,
        dtype=settings.dtype,
        torch_threads=settings.torch_threads,
        warmup_batch_size=settings.max_batch_size or CPU_BATCH_SIZE,
        name=settings.model_name,
        pooling=settings.pooling,
        default_prompt_name=settings.default_prompt_name,
        default_prompt=settings.default_prompt,
        matryoshka_dims=tuple(settings.matryoshka_dims),
    )


async def start_local_backends(
    models: list[Settings], metrics: Metrics, model_factory: ModelFactory
) -> tuple[dict[str, Backend], dict[str, Settings]]:
    """Load each model (one at a time, so peak memory is one load) behind its own batcher.

    Returns the started backends and each one's Settings, by served name. If one fails to load,
    those already started are stopped (their models released) before the error propagates.
    """
    backends: dict[str, Backend] = {}
    model_settings: dict[str, Settings] = {}
    try:
        for settings in models:
            model = await asyncio.to_thread(model_factory, settings)
            backend = BatchedBackend.batched(model, settings, metrics)
            name = backend.info.name
            if name in backends:
                await backend.stop()
                raise ModelsFileError(f"two models are named {name!r}; name them (NAME=SOURCE or name = ...)")
            await backend.start()
            backends[name] = backend
            model_settings[name] = batching_settings(settings, backend.info.device)
    except BaseException:
        await stop_backends(backends, timeout_s=None)  # nothing was served: nothing to drain
        raise
    return backends, model_settings


async def stop_backends(backends: dict[str, Backend], timeout_s: float | None) -> None:
    """Stop taking work, finish what was accepted (within `timeout_s` each), release the models."""
    for backend in backends.values():
        await backend.stop(timeout_s)


def metrics_for(models: list[Settings]) -> Metrics:
    """The app's collectors, batch-size buckets up to the largest batch any model may form."""
    return Metrics(max(m.max_batch_size or GPU_BATCH_SIZE for m in models))


def create_app(
    settings: Settings,
    *,
    model_factory: ModelFactory | None = None,
    backends_factory: BackendsFactory | None = None,
) -> ConvoyApp:
    """Build the app. `model_factory` swaps the model (tests use small or faulty ones);
    `backends_factory` replaces loading the models here (a `--workers N` front-end).

    Raises `SecurityConfigError` at once for unusable auth settings (before any model loads).
    """
    factory = model_factory or load_configured_model
    auth = Authenticator.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        models = served_models(settings)
        metrics = metrics_for(models)
        # One pooled HTTP client for every upstream call (/process, --backend remote).
        upstreams = UpstreamClient.from_settings(settings, metrics)
        log_auth_mode(auth, settings)
        try:
            if settings.backend == "remote":
                backend = build_remote_backend(settings, metrics, upstreams)
                await backend.start()
                backends: dict[str, Backend] = {backend.info.name: backend}
                model_settings = {backend.info.name: batching_settings(settings, backend.info.device)}
            elif backends_factory is not None:
                backends, model_settings = await backends_factory(models, metrics)
            else:
                backends, model_settings = await start_local_backends(models, metrics, factory)
            runtime = Runtime(
                settings=settings,
                metrics=metrics,
                auth=auth,
                upstreams=upstreams,
                backends=backends,
                model_settings=model_settings,
            )
            app.state.runtime = runtime
            log.info("ready: serving %s", ", ".join(backends))
            try:
                yield
            finally:
                # Stop taking work, finish what was accepted, then release the models.
                runtime.draining = True
                await stop_backends(backends, settings.drain_timeout_s)
        finally:
            await upstreams.aclose()
            log.info("stopped")

    json_access_log = settings.access_log and settings.log_format == "json"
    app = ConvoyApp(
        title="Convoy",
        version=__version__,
        summary="Dynamic-batching inference server for Hugging Face encoder models.",
        lifespan=lifespan,
        default_response_class=FastJSONResponse,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    routers = (predict, process, stream, ws, openai, tei, rerank)
    for router in (module.router for module in routers):
        app.include_router(router, dependencies=[RequireAuth], responses=UNAUTHORIZED)
    # The hot routes' fast path runs before any middleware and does their share itself.
    hot: dict[str, tuple[type[BaseModel], Handler]] = {
        "/v1/embeddings": (EmbeddingsRequest, openai.create_embeddings),
        "/embed": (TEIRequest, tei.embed),
        "/": (TEIRequest, tei.infer),
        "/predict": (PredictRequest, predict.predict),
    }
    app.fast_path = FastPath(
        hot,
        max_body_bytes=settings.max_body_bytes,
        cors=bool(settings.cors_allow_origins),
        json_access_log=json_access_log,
    )
    # Added innermost first: body limit -> CORS -> request context (X-Request-ID on every answer).
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    install_cors(app, settings)
    app.add_middleware(RequestContextMiddleware, json_access_log=json_access_log)
    return app


def app_from_env() -> FastAPI:
    """`uvicorn --factory server.app:app_from_env --workers N`: settings from CONVOY_* env vars.

    Each worker process builds its own app, so each loads its own copy of every model.
    """
    return create_app(Settings())
