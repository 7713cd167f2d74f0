"""Rerank clients (the README's rerank rows): cohere's v2 and v1 clients and haystack's TEI ranker
against a live Convoy serving a sentence-transformers CrossEncoder, each score checked against
`CrossEncoder.predict` on the same folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cohere
import numpy as np
import pytest
from haystack import Document
from haystack.utils import Secret
from haystack_integrations.components.rankers.huggingface_api import HuggingFaceTEIRanker

from server.app import create_app
from tests.integration.clients.conftest import KEY, build
from tests.support.live_server import LiveServer, live_server
from tests.support.readme import client_line
from tests.support.settings import make_settings
from tests.support.st_models import build_cross_encoder

pytestmark = [pytest.mark.integration, pytest.mark.clients]

NAME = "my-reranker"  # the README's
QUERY = "How does Convoy batch requests?"
DOCUMENTS = [
    "The weather was sunny in the afternoon.",
    "Convoy groups the chunks of concurrent requests into one forward pass.",
    "A recipe for apple pie with cinnamon.",
    "Batches are cut at 32 items or after a few milliseconds.",
]


@pytest.fixture(scope="module")
def reranker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, list[float]]]:
    from sentence_transformers import CrossEncoder

    folder = build_cross_encoder(Path(tmp_path_factory.mktemp("rerank")) / NAME)
    expected = CrossEncoder(str(folder), device="cpu").predict([(QUERY, d) for d in DOCUMENTS])
    with live_server(create_app(make_settings(model=str(folder), api_keys=[KEY]))) as server:
        yield server, [float(x) for x in expected]


def best_first(expected: list[float]) -> list[int]:
    return [int(i) for i in np.argsort(-np.asarray(expected), kind="stable")]


@pytest.mark.parametrize("callee", ["cohere.ClientV2", "cohere.Client"])
def test_cohere_clients_rank_as_the_cross_encoder(
    reranker: tuple[LiveServer, list[float]], callee: str
) -> None:
    server, expected = reranker
    client: Any = build(callee, server, cohere=cohere)
    answer = client.rerank(model=NAME, query=QUERY, documents=DOCUMENTS, top_n=3)
    assert [r.index for r in answer.results] == best_first(expected)[:3]
    for r in answer.results:
        assert r.relevance_score == pytest.approx(expected[r.index], abs=1e-4)
    if callee == "cohere.Client":  # v1 echoes the documents; v2 has no such field
        assert [r.document.text for r in answer.results] == [DOCUMENTS[r.index] for r in answer.results]
    wrong_key = eval(client_line(callee, server.url).replace(KEY, "wrong-key"), {"cohere": cohere})
    with pytest.raises(cohere.core.ApiError) as refused:
        wrong_key.rerank(model=NAME, query=QUERY, documents=DOCUMENTS)
    assert refused.value.status_code == 401


def test_haystack_tei_ranker_ranks_as_the_cross_encoder(reranker: tuple[LiveServer, list[float]]) -> None:
    server, expected = reranker
    ranker = build("HuggingFaceTEIRanker", server, HuggingFaceTEIRanker=HuggingFaceTEIRanker, Secret=Secret)
    ranked = ranker.run(query=QUERY, documents=[Document(content=d) for d in DOCUMENTS])["documents"]
    assert [d.content for d in ranked] == [DOCUMENTS[i] for i in best_first(expected)[:3]]
    for d in ranked:
        assert d.score == pytest.approx(expected[DOCUMENTS.index(d.content)], abs=1e-4)
