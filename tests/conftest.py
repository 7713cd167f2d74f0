"""Fixtures shared by every suite: settings, and a real MiniLM server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from server.app import create_app
from tests.support.live_server import LiveServer, live_server
from tests.support.settings import make_settings

# Real sentence-transformers model folders, built on demand: st_model("cls_dense_normalize").
pytest_plugins = ["tests.support.st_fixtures"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def hf_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1 (always set here) also stops huggingface_hub's InferenceClient from calling
    loopback servers; lift it for one test. Nothing in such a test reaches beyond 127.0.0.1."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="session")
def minilm_server() -> Iterator[LiveServer]:
    """One real MiniLM server for the whole session; tests must not change its state."""
    with live_server(create_app(make_settings())) as server:
        yield server
