"""LiveServer: a real uvicorn server on a free loopback port, run in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI


class LiveServer:
    def __init__(self, app: FastAPI | Any, **uvicorn_kwargs: Any) -> None:
        self.config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", **uvicorn_kwargs
        )
        self.server = uvicorn.Server(self.config)
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
def live_server(app: FastAPI | Any, **uvicorn_kwargs: Any) -> Iterator[LiveServer]:
    server = LiveServer(app, **uvicorn_kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()
