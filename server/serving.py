"""run(): uvicorn with graceful draining: on SIGTERM readiness fails first, accepted work finishes."""

from __future__ import annotations

import logging
import resource
import socket
import sys
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from server.api.connections import ConnectionLimits, limited_http_protocol
from server.config import Settings
from server.runtime import Runtime

log = logging.getLogger("convoy")

# `convoy serve`'s exit status when it stopped because a model stayed unhealthy.
UNHEALTHY_EXIT_CODE = 3

# File descriptors the process needs besides client connections: model files, the listener,
# upstream connections, logs.
_FD_RESERVE = 64


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


def build_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    """uvicorn's Config for `settings`: what `run` serves, and what the connection tests serve."""
    limits = ConnectionLimits(
        header_timeout_s=settings.header_timeout_s, max_connections=settings.max_connections
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="debug" if settings.debug else settings.log_level,
        # JSON access lines come from Convoy's middleware; uvicorn's text lines would double them.
        access_log=settings.access_log and settings.log_format == "text",
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) or None,
        # uvicorn's HTTP/1.1 protocol plus a deadline for receiving each request and a connection cap.
        http=limited_http_protocol(limits),
    )


def warn_if_fd_limit_below(max_connections: int | None) -> None:
    """Past the file-descriptor limit accept() fails and uvicorn stops accepting for a while,
    instead of answering 503: say so at start, while it can still be fixed."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if (
        max_connections is not None
        and soft != resource.RLIM_INFINITY
        and max_connections + _FD_RESERVE > soft
    ):
        log.warning(
            "max_connections=%d is near or above the file-descriptor limit (%d): raise `ulimit -n` "
            "or lower --max-connections",
            max_connections,
            soft,
        )


def build_server(app: FastAPI, settings: Settings) -> DrainingServer:
    """The server `convoy serve` runs: uvicorn, its Config from `settings`, drain and health watch."""
    return DrainingServer(
        build_config(app, settings), app, settings.drain_timeout_s, settings.unhealthy_exit_s
    )


def run(app: FastAPI, settings: Settings) -> None:
    warn_if_fd_limit_below(settings.max_connections)
    server = build_server(app, settings)
    server.run()
    if server.unhealthy_exit:
        raise SystemExit(UNHEALTHY_EXIT_CODE)


def configure_logging(settings: Settings) -> None:
    """`convoy serve`'s logs (each process of `--workers N` too): level and format, JSON access lines."""
    level = "DEBUG" if settings.debug else settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.access_log and settings.log_format == "json":
        _log_json_lines("convoy.access")


def _log_json_lines(name: str) -> None:
    """The access logger writes bare JSON objects, one a line, to stdout for log shippers."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
