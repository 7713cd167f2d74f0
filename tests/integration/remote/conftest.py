"""Fixtures for the remote and streaming suites: loopback upstreams and Convoy servers over them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from server.app import create_app
from tests.support.fake_model import FakeModel, mentions
from tests.support.live_server import LiveServer, live_server
from tests.support.settings import make_settings
from tests.support.upstreams import Upstream, refused_url, run_upstream

REMOTE_CONCURRENCY = 4
REMOTE_TIMEOUT_S = 2.0


@pytest.fixture(scope="session")
def upstreams() -> Iterator[list[Upstream]]:
    """Three allowlisted upstreams (separate servers)."""
    with ExitStack() as stack:
        yield [stack.enter_context(run_upstream()) for _ in range(3)]


@pytest.fixture(scope="session")
def outside() -> Iterator[Upstream]:
    """A live upstream that is NOT in the allowlist: nothing may ever reach it."""
    with run_upstream() as upstream:
        yield upstream


@pytest.fixture(scope="session")
def refused() -> str:
    return refused_url()


@pytest.fixture(autouse=True)
def _fresh_recorders(request: pytest.FixtureRequest) -> None:
    for name in ("upstreams", "outside"):
        if name in request.fixturenames:
            value = request.getfixturevalue(name)
            for upstream in value if isinstance(value, list) else [value]:
                upstream.rec.reset()


@pytest.fixture(scope="session")
def remote_server(upstreams: list[Upstream], refused: str) -> Iterator[LiveServer]:
    """--backend remote (plain) on upstream 0's /script; /process may call upstreams 0-2."""
    settings = make_settings(
        backend="remote",
        remote_url=[f"{upstreams[0].url}/script"],
        remote_model="echo",
        remote_allow=[f"{u.url}/" for u in upstreams] + [f"{refused}/"],
        remote_concurrency=REMOTE_CONCURRENCY,
        remote_timeout_s=REMOTE_TIMEOUT_S,
        remote_retries=2,
        remote_backoff_s=0.05,
    )
    with live_server(create_app(settings)) as server:
        yield server


@pytest.fixture(scope="session")
def openai_server(upstreams: list[Upstream]) -> Iterator[LiveServer]:
    """--backend remote --remote-format openai on upstream 1's /v1 base."""
    settings = make_settings(
        backend="remote",
        remote_format="openai",
        remote_url=[f"{upstreams[1].url}/v1"],
        remote_model="fake-embed",
        max_batch_size=32,
    )
    with live_server(create_app(settings)) as server:
        yield server


@pytest.fixture(scope="session")
def gated_model() -> FakeModel:
    gate = threading.Event()
    gate.set()
    return FakeModel(name="gated", gate=gate, gate_if=mentions("gate"))


@pytest.fixture(scope="session")
def gated_server(gated_model: FakeModel) -> Iterator[LiveServer]:
    """A local backend whose model blocks on texts saying "gate"; one chunk per batch."""
    app = create_app(make_settings(max_batch_size=1, max_wait_ms=0), model_factory=lambda _: gated_model)
    try:
        with live_server(app) as server:
            yield server
    finally:
        gated_model.gate.set()
