"""The official `openai` client, as the README points it at Convoy."""

from __future__ import annotations

import pytest
from openai import OpenAI

from tests.integration.clients.conftest import MODEL, TEXTS, assert_vectors, build
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.clients]


def test_openai(server: LiveServer, reference: object) -> None:
    client = build("OpenAI", server, OpenAI=OpenAI)
    resp = client.embeddings.create(model=MODEL, input=TEXTS)  # the client's default: base64
    assert_vectors(reference, TEXTS, [d.embedding for d in resp.data])
