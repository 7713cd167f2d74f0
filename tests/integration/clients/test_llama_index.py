"""LlamaIndex: OpenAILikeEmbedding (OpenAI API) and TextEmbeddingsInference (TEI API)."""

from __future__ import annotations

import pytest
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.embeddings.openai_like import OpenAILikeEmbedding
from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

from tests.integration.clients.conftest import KEY, MODEL, QUERY, TEXTS, assert_vectors, build
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.clients]


@pytest.mark.parametrize(
    ("callee", "cls"),
    [("OpenAILikeEmbedding", OpenAILikeEmbedding), ("TextEmbeddingsInference", TextEmbeddingsInference)],
)
def test_embeddings(server: LiveServer, reference: object, callee: str, cls: type) -> None:
    embed = build(callee, server, **{callee: cls})
    assert_vectors(reference, TEXTS, embed.get_text_embedding_batch(TEXTS))
    assert_vectors(reference, [QUERY], [embed.get_query_embedding(QUERY)])


def test_openai_embedding_takes_only_openais_model_names(server: LiveServer) -> None:
    # Why the README names OpenAILikeEmbedding.
    with pytest.raises(ValueError, match=MODEL):
        OpenAIEmbedding(model=MODEL, api_base=f"{server.url}/v1", api_key=KEY)
