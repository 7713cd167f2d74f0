"""convoy bench counts every wrong answer, by kind, against a real loopback server that misbehaves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.cli import main
from tests.support.bench import faulty_app, run_bench
from tests.support.live_server import LiveServer, live_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def faulty_server() -> Iterator[LiveServer]:
    with live_server(faulty_app()) as server:
        yield server


def test_closed_loop_counts_each_kind_of_wrong_answer(faulty_server: LiveServer, tmp_path: Path) -> None:
    doc = run_bench(
        tmp_path, "--url", faulty_server.url, "--concurrency", "4", "--requests", "50", "--timeout", "0.3"
    )
    (level,) = doc["levels"]
    assert level.errors == {"bad_json": 5, "bad_shape": 10, "http_500": 5, "http_503": 5, "timeout": 5}
    assert level.requests == 20
    # Throughput and latency come from the 20 correct answers only: 2 chunks of 3 tokens each.
    assert level.chunks_per_s * level.elapsed_s == pytest.approx(40)
    assert level.tokens_per_s * level.elapsed_s == pytest.approx(120)
    assert level.latency_ms["max"] < 300  # the hung requests are not in the latency figures
    assert level.server_queue_ms_p50 == 1.5 and level.server_inference_ms_p50 == 4.0
    assert "not JSON" in level.error_examples["bad_json"]


def test_open_loop_counts_the_same(faulty_server: LiveServer, tmp_path: Path) -> None:
    doc = run_bench(
        tmp_path, "--url", faulty_server.url, "--rate", "400", "--requests", "20", "--timeout", "0.3"
    )
    (level,) = doc["levels"]
    assert level.mode == "open" and level.label == "r=400/s"
    assert level.requests + level.error_total == 20
    assert level.errors == {"bad_json": 2, "bad_shape": 4, "http_500": 2, "http_503": 2, "timeout": 2}


def test_embeddings_route_checks_rows_and_indexes(faulty_server: LiveServer, tmp_path: Path) -> None:
    doc = run_bench(
        tmp_path,
        *("--url", faulty_server.url, "--route", "/v1/embeddings", "--profile", "long"),
        *("--chunk-size", "500", "--corpus-size", "20", "--concurrency", "3", "--requests", "15"),
        *("--api-key", "sesame"),
    )
    (level,) = doc["levels"]
    assert level.errors == {"bad_shape": 6, "http_500": 3}
    assert level.requests == 6
    assert level.tokens_per_s * level.elapsed_s == pytest.approx(5 * level.chunks_per_s * level.elapsed_s)


def test_process_route_counts_failed_chunks(faulty_server: LiveServer, tmp_path: Path) -> None:
    doc = run_bench(
        tmp_path,
        *("--url", faulty_server.url, "--route", "/process", "--api-url", "http://upstream.invalid/"),
        *("--concurrency", "2", "--requests", "8"),
    )
    (level,) = doc["levels"]
    assert level.errors == {"upstream_failed": 2} and level.requests == 6
    assert level.tokens_per_s is None


def test_unreachable_server_fails_fast_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with live_server(faulty_app()) as server:
        url = server.url
    with pytest.raises(SystemExit) as done:  # the port is closed now
        main(["bench", "--url", url, "--requests", "1", "--warmup", "0"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"convoy bench: error: cannot reach {url}") and "\n" not in err
