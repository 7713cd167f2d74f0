"""run(): uvicorn with graceful draining: on SIGTERM readiness fails first, accepted work finishes."""

from __future__ import annotations

import logging
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI

from server.config import Settings
from server.runtime import Runtime

log = logging.getLogger("convoy")


class DrainingServer(uvicorn.Server):
    """uvicorn.Server that flips the app to draining the moment a stop signal arrives.

    From then on /ready answers 503 and new inference requests get 503, while requests already
    accepted run to completion. The listening socket stays open until they have (bounded by the
    drain timeout): closing it at once would reset connections still in the accept backlog, and
    a load balancer learns more from a 503 than from a reset.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_timeout_s: float) -> None:
        super().__init__(config)
        self._app = app
        self._drain_timeout_s = drain_timeout_s

    def _runtime(self) -> Runtime | None:
        return getattr(self._app.state, "runtime", None)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        runtime = self._runtime()
        if runtime is not None and not runtime.draining:
            runtime.draining = True
            log.info("signal %d: draining (readiness off, new work refused)", sig)
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        runtime = self._runtime()
        if runtime is not None and not await runtime.wait_idle(self._drain_timeout_s):
            log.warning("drain timeout: %d requests still running", runtime.active_requests)
        await super().shutdown(sockets)


def run(app: FastAPI, settings: Settings) -> None:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="debug" if settings.debug else settings.log_level,
        # JSON access lines come from Convoy's middleware; uvicorn's text lines would double them.
        access_log=settings.access_log and settings.log_format == "text",
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
    )
    DrainingServer(config, app, settings.drain_timeout_s).run()
