"""Convoy on Ray Serve: a local Ray on 127.0.0.1, two CPU replicas behind Serve's HTTP proxy."""

from __future__ import annotations

import asyncio
import importlib.util
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from server.ray_serve import APP_NAME, REPLICA_HEADER, build_application
from tests.support.live_server import LiveServer
from tests.support.settings import make_settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.ray,
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install 'convoy[ray]')"
    ),
    pytest.mark.timeout(180),
]

REPLICAS = 2


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def ray_serve_url() -> Iterator[str]:
    temp_dir = tempfile.mkdtemp(prefix="convoy-ray-")
    with pytest.MonkeyPatch.context() as env:
        # Read when ray is imported, inherited by every Ray process started below:
        # a single-node Ray on the loopback address, no usage reports, a token of our own
        # instead of one written to ~/.ray.
        env.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        env.setenv("RAY_AUTH_MODE", "token")
        env.setenv("RAY_AUTH_TOKEN", secrets.token_hex(16))
        import ray
        from ray import serve

        ray.init(
            address="local",
            num_cpus=REPLICAS + 1,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            _temp_dir=temp_dir,
            log_to_driver=False,
        )
        try:
            port = _free_loopback_port()
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            settings = make_settings(ray_replicas=REPLICAS, max_batch_size=8)
            serve.run(build_application(settings), name=APP_NAME, route_prefix="/")
            yield f"http://127.0.0.1:{port}"
        finally:
            serve.shutdown()
            ray.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)


def test_concurrent_requests_through_the_proxy_reach_both_replicas(
    ray_serve_url: str, minilm_server: LiveServer
) -> None:
    texts = [f"Request {i} asks Convoy on Ray Serve for an embedding." for i in range(32)]

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=ray_serve_url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/predict", json={"text": t}) for t in texts))

    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [200] * len(texts), responses[0].text

    # Correct: each embedding is what a plain single-process Convoy computes for that text.
    with httpx.Client(base_url=minilm_server.url, timeout=60) as local:
        for text, r in zip(texts[:8], responses[:8], strict=True):
            expected = local.post("/predict", json={"text": text}).json()["aggregate"]["embedding"]
            np.testing.assert_allclose(r.json()["aggregate"]["embedding"], expected, atol=1e-5)
    assert all(len(r.json()["aggregate"]["embedding"]) == 384 for r in responses)

    # Ray routed the burst over both replicas, each a full Convoy with its own batcher.
    replicas = {r.headers[REPLICA_HEADER] for r in responses}
    assert len(replicas) == REPLICAS
    assert all(len(r.headers.get_list("x-request-id")) == 1 for r in responses)


def test_same_routes_behind_the_proxy(ray_serve_url: str) -> None:
    with httpx.Client(base_url=ray_serve_url, timeout=30) as client:
        assert client.get("/ready").json() == {"status": "ready"}
        models = client.get("/models").json()["models"]
        assert [(m["name"], m["max_batch_size"]) for m in models] == [("all-MiniLM-L6-v2", 8)]
        bad = client.post("/predict", json={"text": "x", "model": "nope"})
        assert bad.status_code == 404 and bad.json()["error"]["code"] == "not_found"
        assert "convoy_requests_total" in client.get("/metrics").text
