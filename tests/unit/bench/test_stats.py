"""convoy bench statistics: percentiles against known sets, the recorder, padding, the table."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.bench.command import BenchError, plan_loads
from server.bench.offline import padding_overhead, sorted_windows
from server.bench.report import format_table
from server.bench.stats import Outcome, Recorder, percentile, percentiles, summarize
from server.cli import build_parser


def test_percentiles_of_one_to_ten() -> None:
    values = [7.0, 1.0, 10.0, 3.0, 5.0, 2.0, 9.0, 4.0, 8.0, 6.0]  # order must not matter
    p50, p90, p99 = percentiles(values)
    assert p50 == pytest.approx(5.5)
    assert p90 == pytest.approx(9.1)
    assert p99 == pytest.approx(9.91)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 10.0


def test_percentiles_of_a_known_skewed_set() -> None:
    # 99 fast requests at 10 ms and one slow at 1000 ms: p99 sits between them.
    values = [10.0] * 99 + [1000.0]
    assert percentile(values, 50) == 10.0
    assert percentile(values, 98) == 10.0
    assert percentile(values, 99) == pytest.approx(10.0 + 0.01 * 990.0)
    assert percentile(values, 100) == 1000.0


def test_percentiles_edge_cases() -> None:
    assert percentiles([4.0]) == [4.0, 4.0, 4.0]
    assert all(math.isnan(x) for x in percentiles([]))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200), st.floats(0, 100))
def test_percentile_matches_numpy_linear(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)


def test_summary_counts_only_correct_answers() -> None:
    rec = Recorder()
    for ms in (10, 20, 30, 40):
        rec.add(Outcome(chunks=2, tokens=19, queue_ms=1.0, inference_ms=ms / 2), ms / 1000)
    rec.add(Outcome("http_500", detail="boom"), 5.0)  # errors do not count towards latency
    rec.add(Outcome("bad_shape", detail="no predictions"), 0.001)
    rec.add(Outcome("http_500", detail="boom again"), 0.001)
    s = summarize(rec, label="c=4", mode="closed", level=4, elapsed_s=2.0)
    assert s.requests == 4 and s.error_total == 3
    assert s.errors == {"bad_shape": 1, "http_500": 2}
    assert s.error_examples["http_500"] == "boom"
    assert s.requests_per_s == 2.0 and s.chunks_per_s == 4.0 and s.tokens_per_s == 38.0
    assert s.latency_ms["p50"] == pytest.approx(25.0)
    assert s.latency_ms["max"] == pytest.approx(40.0)
    assert s.server_queue_ms_p50 == 1.0 and s.server_inference_ms_p50 == pytest.approx(12.5)


def test_tokens_per_second_is_unknown_when_a_route_does_not_report_tokens() -> None:
    rec = Recorder()
    rec.add(Outcome(chunks=1, tokens=None), 0.01)
    assert summarize(rec, label="c=1", mode="closed", level=1, elapsed_s=1).tokens_per_s is None


def test_padding_overhead_pads_each_batch_to_its_longest() -> None:
    assert padding_overhead([3, 5], 2) == pytest.approx(10 / 8 - 1)
    assert padding_overhead([4, 4, 4], 2) == 0.0
    lengths = [10, 100, 10, 100]
    assert padding_overhead(lengths, 2) == pytest.approx(400 / 220 - 1)
    order = sorted_windows(lengths, 4)
    assert [lengths[i] for i in order] == [10, 10, 100, 100]
    assert padding_overhead(lengths, 2, order) == 0.0
    assert sorted_windows([3, 1, 9, 2, 8], 2) == [1, 0, 3, 2, 4]


def test_table_shows_errors_by_kind() -> None:
    rec = Recorder()
    rec.add(Outcome(chunks=1, tokens=5), 0.002)
    rec.add(Outcome("http_503"), 0.001)
    table = format_table([summarize(rec, label="c=1", mode="closed", level=1, elapsed_s=1.0)])
    header, row = table.splitlines()
    assert header.split()[:3] == ["level", "ok", "req/s"]
    assert row.startswith("c=1") and row.endswith("http_503=1")


def _bench_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", *argv])


def test_load_plan_from_flags() -> None:
    loads = plan_loads(_bench_args("--sweep", "1,4,16", "--requests", "10"))
    assert [(x.mode, x.level, x.max_inflight, x.requests) for x in loads] == [
        ("closed", 1, 1, 10),
        ("closed", 4, 4, 10),
        ("closed", 16, 16, 10),
    ]
    (open_load,) = plan_loads(_bench_args("--rate", "50", "--concurrency", "8", "--duration", "2"))
    assert (open_load.mode, open_load.level, open_load.max_inflight, open_load.duration_s) == (
        "open",
        50,
        8,
        2,
    )
    with pytest.raises(BenchError):
        plan_loads(_bench_args("--sweep", "1,2", "--concurrency", "3"))
    with pytest.raises(SystemExit):
        _bench_args("--sweep", "1,0")  # argparse refuses non-positive levels
