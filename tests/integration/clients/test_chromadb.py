"""Chroma's embedding functions: OpenAIEmbeddingFunction and HuggingFaceEmbeddingServer (TEI)."""

from __future__ import annotations

import pytest
from chromadb.utils.embedding_functions import HuggingFaceEmbeddingServer, OpenAIEmbeddingFunction

from tests.integration.clients.conftest import KEY, TEXTS, assert_vectors, build
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.clients]


@pytest.mark.parametrize(
    ("cls", "key_variable"),
    # Where each reads its key, as the README says (a key passed directly is deprecated in both).
    [(OpenAIEmbeddingFunction, "CHROMA_OPENAI_API_KEY"), (HuggingFaceEmbeddingServer, "HUGGINGFACE_API_KEY")],
)
def test_embedding_function(
    server: LiveServer, reference: object, monkeypatch: pytest.MonkeyPatch, cls: type, key_variable: str
) -> None:
    monkeypatch.setenv(key_variable, KEY)
    embed = build(cls.__name__, server, **{cls.__name__: cls})
    assert_vectors(reference, TEXTS, embed(TEXTS))
