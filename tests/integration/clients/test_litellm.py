"""litellm's embedding() through its OpenAI-compatible provider (`openai/` model prefix)."""

from __future__ import annotations

import pytest

from tests.integration.clients.conftest import TEXTS, assert_vectors, build
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.clients]


def test_embedding(server: LiveServer, reference: object) -> None:
    import litellm  # after conftest's LITELLM_LOCAL_MODEL_COST_MAP: no price list fetched

    response = build("litellm.embedding", server, litellm=litellm, texts=TEXTS)
    assert_vectors(reference, TEXTS, [d["embedding"] for d in response.data])
