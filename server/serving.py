"""run(): uvicorn with graceful draining: on SIGTERM readiness fails first, accepted work finishes."""

from __future__ import annotations

import logging
import socket
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from server.config import Settings
from server.runtime import Runtime

log = logging.getLogger("convoy")

# `convoy serve`'s exit status when it stopped because a model stayed unhealthy.
UNHEALTHY_EXIT_CODE = 3


class DrainingServer(uvicorn.Server):
    """uvicorn.Server that flips the app to draining the moment a stop signal arrives.

    From then on /ready answers 503 and new inference requests get 503, while requests already
    accepted run to completion. The listening socket stays open until they have (bounded by the
    drain timeout): closing it at once would reset connections still in the accept backlog, and
    a load balancer learns more from a 503 than from a reset.
    """

    def __init__(
        self, config: uvicorn.Config, app: FastAPI, drain_timeout_s: float, unhealthy_exit_s: float
    ) -> None:
        super().__init__(config)
        self._app = app
        self._drain_timeout_s = drain_timeout_s
        self._unhealthy_exit_s = unhealthy_exit_s
        self.unhealthy_exit = False  # stopped because a model stayed unhealthy: exit non-zero

    def _runtime(self) -> Runtime | None:
        return getattr(self._app.state, "runtime", None)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        runtime = self._runtime()
        if runtime is not None and not runtime.draining:
            runtime.draining = True
            log.info("signal %d: draining (readiness off, new work refused)", sig)
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        # Once a second: a model that stays unhealthy (a failed device, a dead batcher) cannot
        # heal in this process, so stop and let the supervisor restart it.
        runtime = self._runtime()
        if counter % 10 == 0 and runtime is not None and not runtime.draining:
            unhealthy_s = runtime.unhealthy_for(time.monotonic())
            if unhealthy_s and unhealthy_s >= self._unhealthy_exit_s:
                log.error(
                    "a model has been unhealthy for %.0f s (--unhealthy-exit-s %g): exiting so the "
                    "supervisor restarts the server",
                    unhealthy_s,
                    self._unhealthy_exit_s,
                )
                self.unhealthy_exit = True
                runtime.draining = True
                self.should_exit = True
        return await super().on_tick(counter)

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
    server = DrainingServer(config, app, settings.drain_timeout_s, settings.unhealthy_exit_s)
    server.run()
    if server.unhealthy_exit:
        raise SystemExit(UNHEALTHY_EXIT_CODE)
