"""The client suite: third-party client libraries against one live MiniLM server that requires
an API key, each built from its line in the README's clients table, each vector checked against
sentence-transformers."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from models.loader import default_model_path
from server.app import create_app
from tests.support.live_server import LiveServer, live_server
from tests.support.readme import client_line
from tests.support.settings import make_settings

KEY = "my-key"  # the README's
MODEL = "all-MiniLM-L6-v2"
TEXTS = ["Convoy batches requests from many clients.", "Encoders turn text into vectors."]
QUERY = "What does Convoy do?"

# These libraries phone home on import or first use (haystack's and chroma's telemetry, litellm's
# model price list): nothing leaves 127.0.0.1. Set before any test module imports them.
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy between a client and 127.0.0.1, and no OpenAI settings from the environment
    (LangChain reads OPENAI_API_BASE, chroma prefers OPENAI_API_KEY over its own variable)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_ORG_ID"):
        monkeypatch.delenv(name, raising=False)
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"):  # LangChain's tracing service
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="package")
def server() -> Iterator[LiveServer]:
    with live_server(create_app(make_settings(api_keys=[KEY]))) as live:
        yield live


@pytest.fixture(scope="package")
def reference() -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(default_model_path()), device="cpu")


def build(callee: str, server: LiveServer, **names: Any) -> Any:
    """Run the README's line for `callee` against `server`; `names` are what it refers to."""
    return eval(client_line(callee, server.url), names)


def assert_vectors(reference: Any, texts: Sequence[str], vectors: Sequence[Sequence[float]]) -> None:
    """One vector per text, each the direction sentence-transformers gives (cosine >= 0.9999)."""
    expected: npt.NDArray[np.float32] = reference.encode(list(texts), normalize_embeddings=True)
    assert len(vectors) == len(texts)
    for text, got, want in zip(texts, vectors, expected, strict=True):
        vec = np.asarray(got, dtype=np.float64)
        assert vec.shape == (384,), text
        cosine = float(vec @ want / np.linalg.norm(vec))
        assert cosine >= 0.9999, f"{text!r}: cosine {cosine:.4f}"
