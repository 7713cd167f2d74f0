"""LiveServer: a real uvicorn server on a free loopback port, run in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from server.config import Settings
from server.serving import build_server


class LiveServer:
    """`server`: a prebuilt uvicorn.Server (e.g. the one `serving_server` builds); otherwise one
    is built from `uvicorn_kwargs`."""

    def __init__(
        self, app: FastAPI | Any, server: uvicorn.Server | None = None, **uvicorn_kwargs: Any
    ) -> None:
        if server is None:
            config = uvicorn.Config(
                app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", **uvicorn_kwargs
            )
            server = uvicorn.Server(config)
        self.config = server.config
        self.server = server
        self._thread = threading.Thread(target=self.server.run, name="live-server")
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        # uvicorn flips `started` once the lifespan finished and the socket listens.
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("uvicorn exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start in time")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=60)


@contextmanager
def live_server(
    app: FastAPI | Any, server: uvicorn.Server | None = None, **uvicorn_kwargs: Any
) -> Iterator[LiveServer]:
    live = LiveServer(app, server, **uvicorn_kwargs)
    live.start()
    try:
        yield live
    finally:
        live.stop()


@contextmanager
def serving_server(app: FastAPI, settings: Settings) -> Iterator[LiveServer]:
    """`app` served exactly as `convoy serve` serves it (server/serving.py's Config and server)."""
    with live_server(app, build_server(app, settings)) as live:
        yield live
