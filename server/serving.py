"""run(): uvicorn with graceful draining: on SIGTERM readiness fails first, accepted work finishes."""

from __future__ import annotations

import logging
import resource
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI

from server.api.connections import ConnectionLimits, limited_http_protocol
from server.config import Settings
from server.runtime import Runtime

log = logging.getLogger("convoy")

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


def run(app: FastAPI, settings: Settings) -> None:
    warn_if_fd_limit_below(settings.max_connections)
    DrainingServer(build_config(app, settings), app, settings.drain_timeout_s).run()
