"""`convoy bench --processes 2` end to end: two spawned generators, one merged report, failures surface."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import overload

import pytest

from server.bench.client import Target
from server.bench.processes import GeneratorFailed, run_levels
from server.bench.routes import ROUTES, Payload
from server.bench.runner import Load
from tests.support.bench import faulty_app, run_bench
from tests.support.live_server import LiveServer, live_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def faulty_server() -> Iterator[LiveServer]:
    with live_server(faulty_app()) as server:
        yield server


def test_two_processes_merge_into_one_report(
    faulty_server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 10 requests per level: one whole cycle of the faulty server's answers, so the counts are
    # exact however the two processes' requests interleave.
    doc = run_bench(
        tmp_path,
        *("--url", faulty_server.url, "--sweep", "1,4", "--requests", "10", "--processes", "2"),
        *("--timeout", "0.3"),
    )
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines if line.startswith(("level ", "c="))] == ["level", "c=1", "c=4"]
    assert doc["meta"]["processes"] == 2
    one, four = doc["levels"]
    # c=1 cannot be split: the second process sat it out.
    assert one.label == "c=1" and one.extra["processes"] == 1
    assert four.label == "c=4" and four.extra["processes"] == 2
    assert len(four.extra["client_cpu_by_process"]) == 2
    assert four.client_cpu == pytest.approx(max(four.extra["client_cpu_by_process"]), abs=1e-4)
    for level in (one, four):
        assert level.requests == 4 and level.errors == {
            "bad_json": 1,
            "bad_shape": 2,
            "http_500": 1,
            "http_503": 1,
            "timeout": 1,
        }
        assert level.chunks_per_s * level.elapsed_s == pytest.approx(8)  # 2 chunks per correct answer
        assert 0 < level.latency_ms["p50"] <= level.latency_ms["p99"] <= level.latency_ms["max"] < 300


def test_open_loop_over_two_processes_sends_every_request(faulty_server: LiveServer, tmp_path: Path) -> None:
    doc = run_bench(
        tmp_path,
        *("--url", faulty_server.url, "--rate", "400", "--requests", "20", "--processes", "2"),
        *("--timeout", "0.3"),
    )
    (level,) = doc["levels"]
    assert level.label == "r=400/s" and level.extra["processes"] == 2
    assert level.requests + level.error_total == 20
    assert level.errors == {"bad_json": 2, "bad_shape": 4, "http_500": 2, "http_503": 2, "timeout": 2}


class DiesInSecondProcess(Sequence[Payload]):
    """Two payloads; the second process (which starts at index 1) exits hard on reading its own."""

    def __len__(self) -> int:
        return 2

    @overload
    def __getitem__(self, index: int) -> Payload: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Payload]: ...
    def __getitem__(self, index: int | slice) -> Payload | Sequence[Payload]:
        if index == 1:
            os._exit(3)  # no exception, no result: as if the OOM killer took it
        return Payload(b'{"text": "x", "chunk_size": 1000}')


def test_a_generator_that_dies_fails_the_run_instead_of_hanging_it() -> None:
    # Port 9 is closed: the first process's request fails at once and it waits at the end-of-level
    # gate for the second, which never arrives; the parent must break that wait.
    target = Target("http://127.0.0.1:9", ROUTES["/predict"], DiesInSecondProcess(), timeout_s=5)
    with pytest.raises(GeneratorFailed, match=r"process 2 of 2: exited with status 3"):
        run_levels(target, [Load("closed", 2, 2, requests=2)], processes=2)
