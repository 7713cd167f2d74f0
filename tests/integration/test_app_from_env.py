"""The uvicorn factory reads CONVOY_* env vars when called (never at import)."""

from __future__ import annotations

import httpx
import pytest

from server.app import app_from_env
from tests.support.live_server import live_server

pytestmark = pytest.mark.integration


def test_factory_takes_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVOY_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("CONVOY_MODEL_NAME", "minilm")
    monkeypatch.setenv("CONVOY_TORCH_THREADS", "1")
    with live_server(app_from_env()) as server:
        (card,) = httpx.get(f"{server.url}/models").json()["models"]
        assert (card["name"], card["max_batch_size"]) == ("minilm", 7)
