"""run(): uvicorn with graceful draining: on SIGTERM readiness fails first, accepted work finishes."""

from __future__ import annotations

import logging
from types import FrameType

import uvicorn
from fastapi import FastAPI

from server.config import Settings
from server.runtime import Runtime

log = logging.getLogger("convoy")


class DrainingServer(uvicorn.Server):
    """uvicorn.Server that flips the app to draining the moment a stop signal arrives.

    From then on /ready answers 503 and new inference requests get 503, while requests already
    accepted run to completion; uvicorn waits for them (up to the drain timeout) before the
    lifespan shuts the batchers down.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        runtime: Runtime | None = getattr(self._app.state, "runtime", None)
        if runtime is not None and not runtime.draining:
            runtime.draining = True
            log.info("signal %d: draining (readiness off, new work refused)", sig)
        super().handle_exit(sig, frame)


def run(app: FastAPI, settings: Settings) -> None:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
    )
    DrainingServer(config, app).run()
