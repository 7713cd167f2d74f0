"""App factories with fake models, for tests that need the server in its own process."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from fastapi import FastAPI

from server.app import create_app
from tests.support.fake_model import FakeModel
from tests.support.live_server import LiveServer, live_server, serving_server
from tests.support.settings import make_settings

ServedAs = Literal["convoy", "plain"]


def slow_fake_app() -> FastAPI:
    """A FakeModel with a fixed cost per batch: capacity = batch / seconds, known in advance."""
    batch = int(os.environ.get("FAKE_BATCH", "4"))
    seconds = float(os.environ.get("FAKE_SECONDS_PER_BATCH", "0.08"))
    model = FakeModel(seconds_per_batch=seconds)
    settings = make_settings(max_batch_size=batch, max_wait_ms=2, access_log=False)
    return create_app(settings, model_factory=lambda _: model)


@contextmanager
def gated_fake_server(
    served_as: ServedAs = "plain", **settings: Any
) -> Iterator[tuple[FakeModel, LiveServer]]:
    """A live server over a FakeModel whose forward waits on `model.gate` (closed at first).

    `served_as`: "convoy" serves it as `convoy serve` does (Convoy's connection protocol, which
    reports disconnects itself); "plain", on uvicorn's defaults (handlers watch the ASGI channel).
    """
    gate = threading.Event()
    model = FakeModel(gate=gate)
    config = make_settings(**settings)
    app = create_app(config, model_factory=lambda _: model)
    served = serving_server(app, config) if served_as == "convoy" else live_server(app)
    with served as server:
        try:
            yield model, server
        finally:
            gate.set()  # never leave the model thread blocked
