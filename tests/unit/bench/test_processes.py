"""--processes: each process's share of a level, the merge of their samples, the saturation note."""

from __future__ import annotations

from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.bench.command import run
from server.bench.merge import ShareResult, merge_shares
from server.bench.processes import split_counts, split_load
from server.bench.report import client_saturation
from server.bench.runner import Load, Mode
from server.bench.stats import LevelSummary, Recorder, percentiles
from server.cli import build_parser


def _recorder(latencies_ms: list[float], *, errors: dict[str, int] | None = None) -> Recorder:
    rec = Recorder()
    for ms in latencies_ms:
        rec.add_ok(ms / 1000, chunks=1, tokens=10, queue_ms=1.0, inference_ms=2.0)
    for kind, n in (errors or {}).items():
        for i in range(n):
            rec.add_error(kind, f"{kind} #{i}")
    return rec


def test_split_counts_is_proportional_and_exact() -> None:
    assert split_counts(101, [1, 1]) == [51, 50]
    assert split_counts(30, [2, 1]) == [20, 10]
    assert split_counts(10, [1, 1, 1]) == [4, 3, 3]
    assert split_counts(2, [1, 1, 1]) == [1, 1, 0]
    assert split_counts(7, [3, 3, 2]) == [3, 2, 2]  # 2.625, 2.625, 1.75: the larger fraction wins


@given(st.integers(0, 10_000), st.lists(st.integers(1, 300), min_size=1, max_size=16))
def test_split_counts_keeps_the_total_within_one_of_exact(total: int, weights: list[int]) -> None:
    counts = split_counts(total, weights)
    assert sum(counts) == total
    for count, weight in zip(counts, weights, strict=True):
        assert abs(count - total * weight / sum(weights)) < 1


def test_closed_loop_concurrency_and_requests_are_dealt_out() -> None:
    shares = split_load(Load("closed", 64, 64, requests=1001), 2)
    assert [(s.level, s.max_inflight, s.requests) for s in shares if s] == [(32, 32, 501), (32, 32, 500)]
    assert all(s is not None and s.mode == "closed" for s in shares)
    # Uneven concurrency: the process with twice the connections gets twice the requests.
    shares = split_load(Load("closed", 3, 3, requests=30), 2)
    assert [(s.level, s.requests) for s in shares if s] == [(2, 20), (1, 10)]


def test_a_level_smaller_than_the_process_count_leaves_processes_idle() -> None:
    assert (
        split_load(Load("closed", 1, 1, duration_s=5), 4) == [Load("closed", 1, 1, duration_s=5)] + [None] * 3
    )
    shares = split_load(Load("closed", 8, 8, requests=2), 4)  # fewer requests than processes
    assert [(s.level, s.requests) for s in shares if s] == [(4, 1), (4, 1)] and shares[2:] == [None, None]


def test_open_loop_rate_follows_the_connection_cap() -> None:
    shares = split_load(Load("open", 300.0, 512, duration_s=10), 3)
    busy = [s for s in shares if s]
    assert [s.max_inflight for s in busy] == [171, 171, 170]
    assert sum(s.level for s in busy) == pytest.approx(300.0)
    assert all(s.mode == "open" and s.duration_s == 10 and s.requests is None for s in busy)


def test_one_process_runs_the_level_unchanged() -> None:
    load = Load("open", 50.0, 8, requests=100)
    assert split_load(load, 1) == [load]


@given(
    st.integers(1, 512),
    st.one_of(st.none(), st.integers(1, 5000)),
    st.integers(1, 16),
    st.sampled_from(get_args(Mode)),
)
def test_shares_add_up_to_the_level(
    connections: int, requests: int | None, processes: int, mode: str
) -> None:
    level = float(connections) if mode == "closed" else 123.0
    load = Load(mode, level, connections, requests=requests, duration_s=None if requests else 2.0)  # type: ignore[arg-type]
    shares = split_load(load, processes)
    busy = [s for s in shares if s is not None]
    assert len(shares) == processes and shares[: len(busy)] == busy  # idle ones come last
    assert sum(s.max_inflight for s in busy) == connections
    assert all(s.max_inflight >= 1 for s in busy)
    assert sum(s.level for s in busy) == pytest.approx(level)
    if requests is not None:
        assert sum(s.requests or 0 for s in busy) == requests and all(s.requests for s in busy)


def test_merged_percentiles_are_over_every_sample_not_averaged() -> None:
    # Process A is fast and steady, process B has the slow tail.
    fast, slow = [10.0] * 100, [20.0] * 90 + [500.0] * 10
    shares = [
        ShareResult(_recorder(fast), started=100.0, finished=102.0, cpu_s=1.0),
        ShareResult(_recorder(slow, errors={"http_503": 3}), started=100.5, finished=104.0, cpu_s=3.15),
    ]
    s = merge_shares(shares, label="c=64", mode="closed", level=64, client_cores=2)
    want = percentiles(fast + slow)
    assert [s.latency_ms[k] for k in ("p50", "p90", "p99")] == pytest.approx(want)
    averaged = [(a + b) / 2 for a, b in zip(percentiles(fast), percentiles(slow), strict=True)]
    assert s.latency_ms["p99"] != pytest.approx(averaged[2])  # what a naive merge would report
    assert s.latency_ms["max"] == pytest.approx(500.0)
    assert s.requests == 200 and s.errors == {"http_503": 3}
    assert s.elapsed_s == pytest.approx(4.0)  # first start to last end
    assert s.requests_per_s == pytest.approx(50.0) and s.tokens_per_s == pytest.approx(500.0)
    assert s.server_queue_ms_p50 == 1.0
    assert s.client_cpu == pytest.approx(0.9)  # the busiest process: 3.15 s of CPU in 3.5 s
    assert s.extra == {"processes": 2, "client_cpu_by_process": [0.5, 0.9], "client_cores": 2}


def test_merge_reads_the_servers_batch_counters_from_the_process_that_read_them() -> None:
    shares = [
        ShareResult(_recorder([5.0]), 0.0, 1.0, 0.1, batch_before=(100.0, 10.0), batch_after=(400.0, 20.0)),
        ShareResult(_recorder([5.0]), 0.0, 1.0, 0.1),
    ]
    assert merge_shares(shares, label="c=2", mode="closed", level=2).server_mean_batch == 30.0
    with pytest.raises(ValueError):
        merge_shares([], label="c=2", mode="closed", level=2)


def _summary(cpu_by_process: list[float], cores: int) -> LevelSummary:
    shares = [ShareResult(Recorder(), 0.0, 1.0, cpu) for cpu in cpu_by_process]
    return merge_shares(shares, label="c=64", mode="closed", level=64, client_cores=cores)


def test_saturation_note_for_one_process_keeps_its_wording() -> None:
    note = client_saturation(_summary([0.99], cores=2))
    assert note == (
        "c=64: the load generator used 99% of a core; "
        "the figures may be limited by the client, not the server"
    )
    assert client_saturation(_summary([0.5], cores=2)) is None


def test_saturation_note_names_any_busy_process() -> None:
    note = client_saturation(_summary([0.4, 0.97], cores=4))
    assert note is not None and "97% of a core (40%, 97%)" in note and "limited by the client" in note
    assert client_saturation(_summary([0.6, 0.7], cores=4)) is None


def test_saturation_note_when_processes_share_too_few_cores() -> None:
    # Four processes on two cores, each at half a core: no process is busy, the cores are.
    note = client_saturation(_summary([0.48, 0.47, 0.46, 0.49], cores=2))
    assert note is not None and "4 load generator processes used 1.9 of the 2 cores" in note
    assert client_saturation(_summary([0.2, 0.2, 0.2, 0.2], cores=2)) is None


def test_processes_do_not_apply_to_the_offline_limit(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["bench", "--offline", "--processes", "2", "--corpus-size", "4"])
    assert run(args) == 2  # refused before the model (and torch) is loaded
    assert "--processes splits HTTP load" in capsys.readouterr().err
