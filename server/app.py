"""create_app(settings): the FastAPI app, its lifespan (load, warm, batch; drain on exit), routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from models.base import Model
from server import __version__
from server.backend import Backend
from server.config import Settings
from server.error_handlers import install_error_handlers
from server.limits import BodyLimitMiddleware
from server.local import LocalBackend
from server.metrics import Metrics
from server.middleware import RequestContextMiddleware
from server.multi_model import ModelsFileError, served_models
from server.remote import RemoteBackend
from server.remote_backends import build_remote_backend
from server.responses import FastJSONResponse
from server.routes import health, openai, predict, process, stream, tei, ws
from server.runtime import Runtime
from server.schemas import UNAUTHORIZED
from server.security import Authenticator, RequireAuth, install_cors, log_auth_mode

log = logging.getLogger("convoy")

ModelFactory = Callable[[Settings], Model]


def load_configured_model(settings: Settings) -> Model:
    """The default factory: the model named by the settings, loaded and warmed up (blocking)."""
    from models.loader import ModelSpec, load_model

    return load_model(
        ModelSpec(
            source=settings.model,
            task=settings.task,
            device=settings.device,
            dtype=settings.dtype,
            torch_threads=settings.torch_threads,
            warmup_batch_size=settings.max_batch_size,
            name=settings.model_name,
        )
    )


async def build_local_backend(settings: Settings, metrics: Metrics, model_factory: ModelFactory) -> Backend:
    model = await asyncio.to_thread(model_factory, settings)
    return LocalBackend.batched(model, settings, metrics)


async def start_local_backends(runtime: Runtime, models: list[Settings], model_factory: ModelFactory) -> None:
    """Load each model (one at a time, so peak memory is one load) behind its own batcher."""
    for model_settings in models:
        backend = await build_local_backend(model_settings, runtime.metrics, model_factory)
        name = backend.info.name
        if name in runtime.backends:
            await backend.stop()
            raise ModelsFileError(f"two models are named {name!r}; name them (NAME=SOURCE or name = ...)")
        await backend.start()
        runtime.backends[name] = backend
        runtime.model_settings[name] = model_settings


def create_app(settings: Settings, *, model_factory: ModelFactory | None = None) -> FastAPI:
    """Build the app. `model_factory` swaps the model (tests use small or faulty ones).

    Raises `SecurityConfigError` at once for unusable auth settings (before any model loads).
    """
    factory = model_factory or load_configured_model
    auth = Authenticator.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        models = served_models(settings)
        runtime = Runtime(settings=settings, metrics=Metrics(max(m.max_batch_size for m in models)))
        app.state.runtime = runtime
        # One pooled HTTP client for every upstream call (/process, --backend remote).
        runtime.remote = RemoteBackend.from_settings(settings, runtime.metrics)
        runtime.auth = auth
        log_auth_mode(auth, settings)
        try:
            if settings.backend == "remote":
                backend = build_remote_backend(settings, runtime.metrics, runtime.remote)
                await backend.start()
                runtime.backends[backend.info.name] = backend
            else:
                await start_local_backends(runtime, models, factory)
            runtime.started = True
            log.info("ready: serving %s", ", ".join(runtime.backends))
            yield
        finally:
            # Stop taking work, finish what was accepted, then release the models (also those
            # already loaded when a later one failed to load) and the HTTP client.
            runtime.draining = True
            try:
                for b in runtime.backends.values():
                    await b.stop(settings.drain_timeout_s)
            finally:
                await runtime.remote.aclose()
                log.info("stopped")

    app = FastAPI(
        title="Convoy",
        version=__version__,
        summary="Dynamic-batching inference server for Hugging Face encoder models.",
        lifespan=lifespan,
        default_response_class=FastJSONResponse,
    )
    install_error_handlers(app)
    # Added innermost first: request context (X-Request-ID on every answer) -> CORS -> body limit.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    install_cors(app, settings)
    app.add_middleware(
        RequestContextMiddleware, json_access_log=settings.access_log and settings.log_format == "json"
    )
    app.include_router(health.router)
    for router in (predict.router, process.router, stream.router, ws.router, openai.router, tei.router):
        app.include_router(router, dependencies=[RequireAuth], responses=UNAUTHORIZED)
    return app


def app_from_env() -> FastAPI:
    """`uvicorn --factory server.app:app_from_env --workers N`: settings from CONVOY_* env vars.

    Each worker process builds its own app, so each loads its own copy of every model.
    """
    return create_app(Settings())
