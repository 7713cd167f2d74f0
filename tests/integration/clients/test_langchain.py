"""LangChain's OpenAIEmbeddings: right vectors with check_embedding_ctx_length=False, and with its
default (tiktoken token ids) a 400 that names that setting, never a 200 with a wrong vector."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import openai
import pytest
from langchain_openai import OpenAIEmbeddings

from tests.integration.clients.conftest import KEY, MODEL, QUERY, TEXTS, assert_vectors, build
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.clients]

BERT_VOCAB = 30522  # MiniLM's vocabulary size
CL100K_FILE = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"  # tiktoken's cache entry for cl100k_base


def test_with_check_embedding_ctx_length_off(server: LiveServer, reference: object) -> None:
    embeddings = build("OpenAIEmbeddings", server, OpenAIEmbeddings=OpenAIEmbeddings)
    assert_vectors(reference, TEXTS, embeddings.embed_documents(TEXTS))
    assert_vectors(reference, [QUERY], [embeddings.embed_query(QUERY)])


@pytest.fixture
def cl100k(monkeypatch: pytest.MonkeyPatch) -> None:
    """tiktoken's cl100k_base from the copy litellm ships (nothing is downloaded here)."""
    spec = importlib.util.find_spec("litellm")
    assert spec is not None and spec.submodule_search_locations, "litellm is in convoy[clients]"
    folder = Path(spec.submodule_search_locations[0]) / "litellm_core_utils" / "tokenizers"
    if not (folder / CL100K_FILE).is_file():
        pytest.skip(f"this litellm no longer ships tiktoken's cl100k_base ({CL100K_FILE}) in {folder}")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(folder))


@pytest.mark.usefixtures("cl100k")
@pytest.mark.parametrize(
    ("text", "ids_in_bert_range"),
    # Before: the first came back 200 with a vector for other text, the second as a 400 about
    # token id 60704 being outside the vocabulary.
    [("hello world", True), ("Convoy batches requests from many clients.", False)],
)
def test_default_gets_a_400_naming_the_setting(
    server: LiveServer, text: str, ids_in_bert_range: bool
) -> None:
    import tiktoken

    ids = tiktoken.get_encoding("cl100k_base").encode(text)
    assert (max(ids) < BERT_VOCAB) == ids_in_bert_range  # both cases are covered
    embeddings = OpenAIEmbeddings(model=MODEL, base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        embeddings.embed_query(text)
    body = err.value.body
    assert isinstance(body, dict)
    assert (body["code"], body["param"]) == ("token_ids_not_accepted", "input")
    assert "check_embedding_ctx_length=False" in body["message"]
