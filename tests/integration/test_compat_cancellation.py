"""The OpenAI and TEI embedding routes honour deadlines and client disconnects as /predict does.

A gated FakeModel holds the model busy with a blocker request; requests to the compatible
routes queue behind it and either pass their X-Request-Timeout (504) or lose their client.
Once the gate opens, the model's own record shows none of their inputs was computed.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import httpx
import pytest

from tests.support.fake_apps import gated_fake_server
from tests.support.fake_model import FakeModel
from tests.support.live_server import LiveServer
from tests.support.metrics import metric_value, wait_for

pytestmark = pytest.mark.integration

ROUTES = [("/v1/embeddings", "input"), ("/embed", "inputs"), ("/", "inputs")]


def body(route: str, field: str, value: object) -> dict[str, object]:
    return {field: value, "model": "fake"} if route.startswith("/v1/") else {field: value}


# Served as `convoy serve` serves (the connection reports a disconnect), and on plain uvicorn
# (a task watches the ASGI channel): both ways must cancel abandoned work.
@pytest.fixture(params=["convoy", "plain"])
def gated(request: pytest.FixtureRequest) -> Iterator[tuple[FakeModel, LiveServer]]:
    with gated_fake_server(request.param, max_batch_size=4) as pair:
        yield pair


@pytest.mark.parametrize(("route", "field"), ROUTES)
def test_deadline_and_disconnect_cancel_queued_inputs(
    gated: tuple[FakeModel, LiveServer], route: str, field: str
) -> None:
    model, server = gated
    url = server.url
    with concurrent.futures.ThreadPoolExecutor() as pool:
        blocker = pool.submit(httpx.post, f"{url}/predict", json={"text": "blocker"}, timeout=30)
        wait_for(model.forward_started.is_set)
        r = httpx.post(
            f"{url}{route}",
            json=body(route, field, ["late one", "late two"]),
            headers={"X-Request-Timeout": "0.2"},
        )
        assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
        for i in range(2):  # each client gives up (and closes its connection) after 0.2 s
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{url}{route}", json=body(route, field, f"abandoned {i}"), timeout=0.2)
        wait_for(lambda: metric_value(url, "convoy_requests_total", route=route, status="499") >= 2)
        assert model.gate is not None
        model.gate.set()
        assert blocker.result().status_code == 200
    wait_for(lambda: metric_value(url, "convoy_cancelled_total") >= 4)
    computed = [t for batch in model.batches for t in batch]
    assert computed == ["blocker"]


@pytest.mark.parametrize(("route", "field"), ROUTES)
def test_bad_timeout_header_is_a_400(gated: tuple[FakeModel, LiveServer], route: str, field: str) -> None:
    _, server = gated
    r = httpx.post(
        f"{server.url}{route}", json=body(route, field, "x"), headers={"X-Request-Timeout": "soon"}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "x-request-timeout"
