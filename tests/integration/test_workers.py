"""`convoy serve --workers 2` as users run it: real processes on 127.0.0.1.

MiniLM through two front-ends answers as the single-process server does, with batches that mix
both front-ends' chunks; a FakeModel engine (tests/support/fake_workers.py), gated through a FIFO,
shows the faults: the engine killed, a front-end killed, a failed device, and SIGTERM's drain.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from server.serving import UNHEALTHY_EXIT_CODE
from server.workers import EXIT_LOST, EXIT_OK
from tests.support.fake_model import fake_vector
from tests.support.fake_workers import GATE_ENV
from tests.support.live_server import LiveServer
from tests.support.metrics import metric_value, wait_for
from tests.support.server_process import ServerProcess, convoy_serve_command, server_process

pytestmark = pytest.mark.integration

TEXTS = [f"Sentence number {i} about {topic}." for i in range(48) for topic in ("ships", "rivers")][:96]


def child(server: ServerProcess, name: str) -> psutil.Process:
    """The group's process named `name` (server/workers.py names them: convoy-engine, convoy-front-N).

    The group answers once one front-end serves; another may still be starting (a spawned child
    takes its name only after the interpreter has started), so the name is waited for.
    """

    def named() -> list[psutil.Process]:
        return [p for p in psutil.Process(server.proc.pid).children() if p.name() == name]

    wait_for(lambda: len(named()) == 1)
    return named()[0]


def mixed_batches(url: str) -> float:
    """Forward passes that held chunks of two or more front-ends."""
    total = metric_value(url, "convoy_batch_frontends_count", model="all-MiniLM-L6-v2")
    return total - metric_value(url, "convoy_batch_frontends_bucket", model="all-MiniLM-L6-v2", le="1.0")


async def predict_all(url: str, texts: list[str]) -> list[list[float]]:
    # 64 connections: the kernel spreads them over both front-ends' listeners (SO_REUSEPORT).
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        answers = await asyncio.gather(*(client.post("/predict", json={"text": t}) for t in texts))
    assert [r.status_code for r in answers] == [200] * len(texts)
    return [r.json()["predictions"][0]["embedding"] for r in answers]


def test_minilm_through_two_front_ends_answers_as_one_process(minilm_server: LiveServer) -> None:
    command = convoy_serve_command("--workers", "2", "--torch-threads", "1", "--no-access-log")
    with server_process(command) as server, httpx.Client(timeout=60) as http:
        # Batches mix front-ends once both hold queued chunks at once; a few waves make that sure.
        for _ in range(5):
            got = asyncio.run(predict_all(server.url, TEXTS))
            if mixed_batches(server.url) > 0:
                break
        assert mixed_batches(server.url) > 0, "no batch held chunks of both front-ends"
        assert metric_value(server.url, "convoy_requests_total", route="/predict", status="200") >= len(TEXTS)
        want = asyncio.run(predict_all(minilm_server.url, TEXTS))
        np.testing.assert_allclose(np.array(got), np.array(want), atol=2e-5)
        # The other routes, answered the same by both servers (the encoder is local to each front-end).
        for method, path, body in [
            ("GET", "/models", None),
            ("GET", "/info", None),
            ("POST", "/tokenize", {"inputs": ["Tokenise me, please", "and me"]}),
            ("POST", "/v1/embeddings", {"input": TEXTS[:3], "model": "all-MiniLM-L6-v2"}),
            ("POST", "/embed", {"inputs": TEXTS[3:5]}),
        ]:
            ours = http.request(method, server.url + path, json=body)
            theirs = http.request(method, minilm_server.url + path, json=body)
            assert ours.status_code == theirs.status_code == 200, (path, ours.text)
            if path in ("/v1/embeddings", "/embed"):
                rows = (
                    [d["embedding"] for d in ours.json()["data"]] if path.startswith("/v1") else ours.json()
                )
                ref = (
                    [d["embedding"] for d in theirs.json()["data"]]
                    if path.startswith("/v1")
                    else theirs.json()
                )
                np.testing.assert_allclose(np.array(rows), np.array(ref), atol=2e-5)
            else:
                assert ours.json() == theirs.json(), path
        stream = http.post(f"{server.url}/stream", json={"text": "One. Two.", "chunk_size": 5})
        assert stream.status_code == 200 and "event: done" in stream.text
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) == EXIT_OK


# ---- faults, with the FakeModel engine -----------------------------------------------------------------
@contextmanager
def fake_group(tmp_path: Path, *args: str) -> Iterator[tuple[ServerProcess, Path]]:
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "tests.support.fake_workers", *args]
    with server_process(command, env={GATE_ENV: str(fifo)}) as server:
        yield server, fifo


def open_gate(fifo: Path) -> None:
    with open(fifo, "wb") as gate:
        gate.write(b"go")


def post_in_background(url: str, texts: list[str]) -> tuple[list[httpx.Response], list[threading.Thread]]:
    """Each text as its own /predict on its own connection, in flight while the test goes on."""
    answers: list[httpx.Response] = []

    def post(text: str) -> None:
        answers.append(httpx.post(f"{url}/predict", json={"text": text}, timeout=60))

    threads = [threading.Thread(target=post, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    return answers, threads


def queued(url: str) -> float:
    return metric_value(url, "convoy_queue_depth", model="fake")


def hold_the_model(url: str) -> tuple[list[httpx.Response], list[threading.Thread]]:
    """A request the engine's model holds at its gate: what comes next waits in the engine's queue."""
    held = post_in_background(url, ["gate"])
    # The batcher counts front-ends per batch as it takes one: the "gate" batch is computing.
    wait_for(lambda: metric_value(url, "convoy_batch_frontends_count", model="fake") == 1)
    return held


def test_killing_the_engine_fails_pending_work_with_503_and_the_parent_exits(tmp_path: Path) -> None:
    with fake_group(tmp_path, "--unhealthy-exit-s", "2") as (server, _):
        held, held_threads = hold_the_model(server.url)
        answers, threads = post_in_background(server.url, ["one", "two", "three"])
        wait_for(lambda: queued(server.url) == 3)
        child(server, "convoy-engine").kill()
        for thread in threads + held_threads:
            thread.join(timeout=30)
        answers += held
        assert sorted(r.status_code for r in answers) == [503] * 4
        assert {r.json()["error"]["code"] for r in answers} == {"model_unavailable"}
        assert httpx.get(f"{server.url}/ready", timeout=5).status_code == 503
        assert httpx.post(f"{server.url}/predict", json={"text": "after"}, timeout=5).status_code == 503
        assert server.proc.wait(timeout=30) == EXIT_LOST


def test_killing_a_front_end_stops_the_group_with_a_failure_status(tmp_path: Path) -> None:
    with fake_group(tmp_path) as (server, _):
        others = [child(server, "convoy-engine"), child(server, "convoy-front-1")]
        child(server, "convoy-front-0").kill()
        assert server.proc.wait(timeout=60) == EXIT_LOST
        _, alive = psutil.wait_procs(others, timeout=10)
        assert not alive, "the engine and the other front-end must stop with the group"


def test_a_failed_device_in_the_engine_turns_every_front_end_unhealthy(tmp_path: Path) -> None:
    with fake_group(tmp_path, "--unhealthy-exit-s", "2") as (server, _):
        r = httpx.post(f"{server.url}/predict", json={"text": "boom"}, timeout=10)
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_unavailable"
        # Both front-ends learn it from the engine: /health probes for real (fails), /ready says so.
        for _ in range(4):  # new connections: both front-ends answer some of them
            with httpx.Client(timeout=10) as http:
                assert http.get(f"{server.url}/health").status_code == 503
                assert http.get(f"{server.url}/ready").status_code == 503
                assert http.post(f"{server.url}/predict", json={"text": "fine"}).status_code == 503
        assert server.proc.wait(timeout=30) == UNHEALTHY_EXIT_CODE


def test_sigterm_drains_every_accepted_request_then_exits_0(tmp_path: Path) -> None:
    # One chunk per batch: "gate" computes (held), the next is tokenised beside it, four wait queued.
    with fake_group(tmp_path, "--max-batch-size", "1") as (server, fifo):
        texts = ["gate", "r1", "r2", "r3", "r4", "r5"]
        held, held_threads = hold_the_model(server.url)
        answers, threads = post_in_background(server.url, texts[1:])
        wait_for(lambda: queued(server.url) == 4)
        server.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: httpx.get(f"{server.url}/ready", timeout=5).status_code == 503)
        open_gate(fifo)
        for thread in threads + held_threads:
            thread.join(timeout=30)
        answers += held
        assert sorted(r.status_code for r in answers) == [200] * len(texts)
        got = sorted(r.json()["predictions"][0]["embedding"][1] for r in answers)
        assert got == sorted(float(fake_vector(t)[1]) for t in texts)
        assert server.proc.wait(timeout=60) == EXIT_OK
