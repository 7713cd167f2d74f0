"""Haystack: the OpenAI embedders (haystack-ai) and the TEI one (huggingface-api-haystack)."""

from __future__ import annotations

import pytest
from haystack import Document
from haystack.components.embedders import OpenAIDocumentEmbedder, OpenAITextEmbedder
from haystack.utils import Secret
from haystack_integrations.components.embedders.huggingface_api import HuggingFaceAPITextEmbedder

from tests.integration.clients.conftest import TEXTS, assert_vectors, build
from tests.support.live_server import LiveServer
from tests.support.readme import client_line

pytestmark = [pytest.mark.integration, pytest.mark.clients]


def test_openai_text_and_document_embedders(server: LiveServer, reference: object) -> None:
    text_embedder = build("OpenAITextEmbedder", server, OpenAITextEmbedder=OpenAITextEmbedder, Secret=Secret)
    assert_vectors(reference, TEXTS[:1], [text_embedder.run(text=TEXTS[0])["embedding"]])
    # "OpenAIDocumentEmbedder takes the same arguments", as the README says.
    line = client_line("OpenAITextEmbedder", server.url).replace(
        "OpenAITextEmbedder(", "OpenAIDocumentEmbedder("
    )
    doc_embedder = eval(line, {"OpenAIDocumentEmbedder": OpenAIDocumentEmbedder, "Secret": Secret})
    docs = doc_embedder.run(documents=[Document(content=t) for t in TEXTS])["documents"]
    assert_vectors(reference, TEXTS, [d.embedding for d in docs])


@pytest.mark.usefixtures("hf_loopback")
def test_tei_embedder(server: LiveServer, reference: object) -> None:
    embedder = build(
        "HuggingFaceAPITextEmbedder",
        server,
        HuggingFaceAPITextEmbedder=HuggingFaceAPITextEmbedder,
        Secret=Secret,
    )
    assert_vectors(reference, TEXTS[:1], [embedder.run(text=TEXTS[0])["embedding"]])
