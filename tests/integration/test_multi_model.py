"""Two models in one process (the packaged MiniLM and a tiny classifier), routed by `model` name."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from models.loader import default_model_path
from server.app import create_app
from server.batching.batched import BatchedBackend
from server.runtime import Runtime
from tests.support.live_server import LiveServer, live_server
from tests.support.settings import make_settings
from tests.support.tiny_classifier import LABELS, build_tiny_classifier

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("multi")
    build_tiny_classifier(root / "tiny-clf")
    models_file = root / "models.toml"
    # The classifier's source is relative: it resolves next to the file.
    models_file.write_text(
        f"""
[[models]]
name = "minilm"
source = "{default_model_path()}"

[[models]]
name = "sentiment"
source = "tiny-clf"
task = "classify"
max_batch_size = 8
max_wait_ms = 1
"""
    )
    with live_server(create_app(make_settings(models_file=models_file, max_batch_size=16))) as server:
        yield server


def _runtime(server: LiveServer) -> Runtime:
    runtime: Runtime = server.config.app.state.runtime
    return runtime


def test_models_lists_both_with_their_own_settings(two_models: LiveServer) -> None:
    r = httpx.get(f"{two_models.url}/models")
    assert r.status_code == 200, r.text
    cards = {c["name"]: c for c in r.json()["models"]}
    assert list(cards) == ["minilm", "sentiment"]
    assert cards["minilm"]["task"] == "embed" and cards["minilm"]["max_batch_size"] == 16
    assert cards["sentiment"]["task"] == "classify" and cards["sentiment"]["max_batch_size"] == 8
    assert cards["sentiment"]["labels"] == list(LABELS)


def test_requests_route_by_model_name(two_models: LiveServer, minilm_server: LiveServer) -> None:
    text = "Convoy serves several models from one process."
    embed = httpx.post(f"{two_models.url}/predict", json={"text": text, "model": "minilm"})
    classify = httpx.post(f"{two_models.url}/predict", json={"text": text, "model": "sentiment"})
    default = httpx.post(f"{two_models.url}/predict", json={"text": text})
    assert embed.status_code == classify.status_code == default.status_code == 200

    assert embed.json()["model"] == default.json()["model"] == "minilm"
    vector = np.array(embed.json()["aggregate"]["embedding"])
    # Same model, same text: the same embedding as a single-model server computes.
    single = httpx.post(f"{minilm_server.url}/predict", json={"text": text}).json()
    np.testing.assert_allclose(vector, single["aggregate"]["embedding"], atol=1e-5)

    body = classify.json()
    assert body["model"] == "sentiment" and body["task"] == "classify"
    scores = body["aggregate"]["scores"]
    assert set(scores) == set(LABELS) and sum(scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert body["aggregate"]["label"] == max(scores, key=scores.__getitem__)


def test_unknown_model_is_404_listing_served_names(two_models: LiveServer) -> None:
    r = httpx.post(f"{two_models.url}/predict", json={"text": "hello", "model": "gpt-9"})
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "not_found" and error["param"] == "model"
    assert "'gpt-9'" in error["message"] and "minilm, sentiment" in error["message"]


def test_each_model_has_its_own_batcher_and_worker(two_models: LiveServer) -> None:
    backends = _runtime(two_models).backends
    batchers = [b.batcher for b in backends.values() if isinstance(b, BatchedBackend)]
    assert len(batchers) == 2 and batchers[0] is not batchers[1]
    assert [b.max_batch_size for b in batchers] == [16, 8]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=two_models.url, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post("/predict", json={"text": f"Sentence number {i}.", "model": name})
                    for i in range(12)
                    for name in ("minilm", "sentiment")
                )
            )

    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses)
    assert {r.json()["model"] for r in responses} == {"minilm", "sentiment"}
    metrics = httpx.get(f"{two_models.url}/metrics").text
    for name in ("minilm", "sentiment"):
        assert f'convoy_batch_size_count{{model="{name}"}}' in metrics
        assert f'convoy_chunks_total{{model="{name}",outcome="ok"}}' in metrics


def test_cli_repeated_model_flags_serve_both(tmp_path: Path) -> None:
    """`--model minilm=PATH --model sentiment=PATH` is the flag form of the models file."""
    from server.cli import build_parser, settings_from_args

    clf = build_tiny_classifier(tmp_path / "clf")
    args = build_parser().parse_args(
        ["serve", "--model", f"minilm={default_model_path()}", "--model", f"sentiment={clf}", "--port", "0"]
    )
    settings = settings_from_args(args).model_copy(update={"torch_threads": 1})
    with live_server(create_app(settings)) as server:
        names = [c["name"] for c in httpx.get(f"{server.url}/models").json()["models"]]
        assert names == ["minilm", "sentiment"]
        r = httpx.post(f"{server.url}/predict", json={"text": "Fine.", "model": "sentiment"})
        assert r.status_code == 200 and r.json()["task"] == "classify"
