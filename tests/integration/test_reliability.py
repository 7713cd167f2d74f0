"""Deadlines, client disconnects and graceful shutdown, against real servers on loopback."""

from __future__ import annotations

import concurrent.futures
import re
import signal
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import httpx
import pytest
from starlette.types import Receive

from server.api import cancellation
from tests.support.fake_apps import ServedAs, gated_fake_server
from tests.support.fake_model import FakeModel
from tests.support.live_server import LiveServer
from tests.support.metrics import wait_for
from tests.support.server_process import convoy_serve_command, server_process

pytestmark = pytest.mark.integration


# Served as `convoy serve` serves (the connection reports a disconnect), and on plain uvicorn
# (a task watches the ASGI channel): both ways must cancel abandoned work.
@pytest.fixture(params=["convoy", "plain"])
def gated(request: pytest.FixtureRequest) -> Iterator[tuple[FakeModel, LiveServer]]:
    with gated_fake_server(request.param, max_batch_size=4) as pair:
        yield pair


def metric(server: LiveServer, pattern: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    found = re.search(pattern + r" (\S+)", text)
    return float(found.group(1)) if found else 0.0


def test_deadline_passes_504_and_its_chunks_never_run(gated: tuple[FakeModel, LiveServer]) -> None:
    model, server = gated
    with concurrent.futures.ThreadPoolExecutor() as pool:
        blocker = pool.submit(httpx.post, f"{server.url}/predict", json={"text": "blocker"}, timeout=30)
        wait_for(model.forward_started.is_set)
        r = httpx.post(
            f"{server.url}/predict",
            json={"text": "too late to matter"},
            headers={"X-Request-Timeout": "0.2"},
            timeout=30,
        )
        assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
        model.gate.set()  # type: ignore[union-attr]
        assert blocker.result().status_code == 200
    wait_for(lambda: metric(server, r"convoy_cancelled_total\{[^}]*\}") >= 1)
    assert "too late to matter" not in [t for b in model.batches for t in b]


def test_bad_timeout_header_is_a_400(gated: tuple[FakeModel, LiveServer]) -> None:
    _, server = gated
    for bad in ("soon", "-1", "0", "99999"):
        r = httpx.post(f"{server.url}/predict", json={"text": "x"}, headers={"X-Request-Timeout": bad})
        assert r.status_code == 400 and r.json()["error"]["param"] == "x-request-timeout"


def test_disconnected_clients_leave_no_work_behind(gated: tuple[FakeModel, LiveServer]) -> None:
    model, server = gated
    with concurrent.futures.ThreadPoolExecutor() as pool:
        blocker = pool.submit(httpx.post, f"{server.url}/predict", json={"text": "blocker"}, timeout=30)
        wait_for(model.forward_started.is_set)
        for i in range(3):  # each client gives up (and closes its connection) after 0.2 s
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{server.url}/predict", json={"text": f"abandoned {i}"}, timeout=0.2)
        wait_for(lambda: metric(server, r'convoy_requests_total\{route="/predict",status="499"\}') >= 3)
        model.gate.set()  # type: ignore[union-attr]
        assert blocker.result().status_code == 200
    wait_for(lambda: metric(server, r"convoy_cancelled_total\{[^}]*\}") >= 3)
    computed = [t for b in model.batches for t in b]
    assert not [t for t in computed if t.startswith("abandoned")]


@pytest.mark.parametrize(("served_as", "watchers"), [("convoy", False), ("plain", True)])
def test_only_a_plain_server_needs_a_task_watching_for_disconnects(
    monkeypatch: pytest.MonkeyPatch, served_as: ServedAs, watchers: bool
) -> None:
    """Convoy's connection reports the disconnect itself: no task per request waits on `receive`."""
    started: list[object] = []
    real = cancellation.wait_for_disconnect

    def counted(receive: Receive) -> Coroutine[Any, Any, None]:
        started.append(receive)
        return real(receive)

    monkeypatch.setattr(cancellation, "wait_for_disconnect", counted)
    with (
        gated_fake_server(served_as, max_batch_size=4) as (model, server),
        concurrent.futures.ThreadPoolExecutor() as pool,
    ):
        blocker = pool.submit(httpx.post, f"{server.url}/predict", json={"text": "blocker"}, timeout=30)
        wait_for(model.forward_started.is_set)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.url}/predict", json={"text": "abandoned"}, timeout=0.2)
        wait_for(lambda: metric(server, r'convoy_requests_total\{route="/predict",status="499"\}') >= 1)
        model.gate.set()  # type: ignore[union-attr]
        assert blocker.result().status_code == 200
    assert bool(started) is watchers


def test_sigterm_drains_accepted_work_and_exits_cleanly() -> None:
    args = ["--torch-threads", "1", "--no-access-log", "--drain-timeout-s", "30", "--max-batch-size", "8"]
    with server_process(convoy_serve_command(*args)) as server:
        url, proc = server.url, server.proc
        text = "A paragraph long enough to keep the model busy for a little while. " * 8
        outcomes: list[str] = []
        lock = threading.Lock()

        def client() -> None:
            # One connection per request: a request is either refused at connect or accepted.
            with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=60) as c:
                for _ in range(30):
                    try:
                        r = c.post(f"{url}/predict", json={"text": text, "chunk_size": 100})
                        ok = r.status_code == 200 and r.json()["chunks"] == len(r.json()["predictions"])
                        outcome = "ok" if ok else f"status {r.status_code}"
                    except httpx.ConnectError:
                        outcome = "refused"
                    except httpx.TransportError as exc:  # accepted, then dropped: a lost request
                        outcome = f"lost: {exc!r}"
                    with lock:
                        outcomes.append(outcome)
                    if outcome in ("refused", "status 503"):
                        return

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        wait_for(lambda: len(outcomes) >= 8)
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        for t in threads:
            t.join(timeout=60)
        assert time.monotonic() - began < 30
        assert code in (0, -signal.SIGTERM)
        lost = [o for o in outcomes if o not in ("ok", "refused", "status 503")]
        assert not lost, lost
        assert outcomes.count("ok") >= 8
