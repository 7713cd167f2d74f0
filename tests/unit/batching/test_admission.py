"""Admission: the cost fit, and refusals only on evidence (a busy server, a trusted fit)."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from server.batching.admission import AdmissionControl, BatchCost, Work
from server.batching.batcher import DynamicBatcher
from server.errors import DeadlineExceeded, Overloaded
from tests.support.fake_model import FakeModel

# A model whose forward pass costs 10 ms plus 0.2 ms per padded token (a token is a word here).
FIXED_S, PER_TOKEN_S = 0.01, 0.0002


def words(n: int, tag: str = "w") -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


# ---- the fit ----------------------------------------------------------------------------------------
def test_the_fit_separates_the_fixed_part_from_the_part_per_token() -> None:
    cost = BatchCost()
    for padded in [16, 64, 256, 1024, 4096, 32, 128, 512, 2048, 8192] * 3:
        cost.observe(padded, 0.004 + 2e-6 * padded)
    assert cost.trusted
    assert cost.fixed_s == pytest.approx(0.004, rel=0.02)
    assert cost.per_token_s == pytest.approx(2e-6, rel=0.02)


def test_before_batch_sizes_spread_a_batch_costs_the_mean_batch_time() -> None:
    cost = BatchCost()
    for _ in range(3):
        cost.observe(100, 0.01)
    assert not cost.trusted  # too few batches to estimate at all
    for _ in range(17):
        cost.observe(100, 0.01)  # one size only: fixed and per-token parts cannot be told apart
    assert cost.trusted and not cost.separated
    assert (cost.fixed_s, cost.per_token_s) == (pytest.approx(0.01), 0.0)
    cost.observe(400, 0.02)
    assert cost.separated and cost.per_token_s > 0


def test_a_thousand_small_documents_are_estimated_from_both_parts() -> None:
    # Learnt on tiny batches (where the fixed part dominates), extrapolated to 1,000 documents of
    # ~50 tokens in batches of 32: a per-character rate would say ~6x more.
    admission = AdmissionControl(max_batch_size=32, max_batch_tokens=16384)
    for items, longest in [(1, 8), (2, 10), (1, 12), (4, 9), (1, 30), (2, 20), (8, 12), (1, 60)] * 2:
        admission.observe_batch(
            items=items, real_tokens=items * longest, longest=longest, seconds=0.02 + 1e-4 * items * longest
        )
    estimate = admission.estimate_s(Work(items=1000, tokens=50_000))
    truth = 32 * 0.02 + 1e-4 * 50_000  # 32 batches (1000 / 32), every token once
    assert truth / 2 <= estimate <= truth * 2


def test_one_stalled_batch_does_not_make_the_queue_look_late() -> None:
    # A shared host froze for 8 s during one batch of a steady load (each batch ~0.5 s). The
    # next request, behind 20 batches (~10 s of work), must still fit its 30 s deadline.
    admission = AdmissionControl(max_batch_size=32, max_batch_tokens=2048)
    for longest in [10, 150, 140, 12, 160, 145] * 10:
        admission.observe_batch(
            items=13, real_tokens=13 * longest, longest=longest, seconds=0.01 + 0.019 * longest / 1000 * 13
        )
    queue = Work(items=260, tokens=260 * 150.0)
    before = admission.estimate_s(queue)
    admission.observe_batch(items=13, real_tokens=13 * 150, longest=150, seconds=8.0)
    assert admission.estimate_s(queue) <= 2 * before
    admission.enqueue(queue.tokens, queue.items)
    admission.check(Work(1, 150), 30.0, busy=True)  # no Overloaded


def test_a_lasting_change_of_cost_is_learnt_as_fast_as_without_the_clipping() -> None:
    # What the clipping must not hide: the device really got 4x slower (another tenant, a clock).
    clipped, plain = BatchCost(), BatchCost(outlier_factor=None)
    for cost in (clipped, plain):
        for padded in [100, 400, 1600, 200, 800] * 6:
            cost.observe(padded, 0.01 + 1e-4 * padded)
        for padded in [100, 400, 1600, 200, 800] * 4:
            cost.observe(padded, 4 * (0.01 + 1e-4 * padded))
    assert clipped.seconds(800) >= 0.8 * plain.seconds(800)
    assert plain.seconds(800) >= 2 * (0.01 + 1e-4 * 800)  # the fit itself moved


def test_a_long_steady_load_of_equal_batches_keeps_the_estimate_right() -> None:
    # Minutes of one load shape on a fast device: tens of thousands of near-equal batches, which
    # made a recursive-least-squares fit overflow (a 64-text queue estimated at 13 s, not 5 ms).
    rng = random.Random(1)
    admission = AdmissionControl(max_batch_size=32, max_batch_tokens=2048)
    for items in [1, 2, 4, 8, 16, 32, 1, 3] * 3:
        admission.observe_batch(
            items=items, real_tokens=items * 20, longest=24, seconds=0.0015 + 1e-6 * items * 24
        )
    for _ in range(30_000):
        items, longest = rng.choice([30, 31, 32]), rng.randint(22, 28)
        noise = rng.lognormvariate(0, 0.3) * (30 if rng.random() < 0.001 else 1)  # with stalls
        admission.observe_batch(
            items=items,
            real_tokens=items * 20,
            longest=longest,
            seconds=(0.0015 + 1e-6 * items * longest) * noise,
        )
    truth = 2 * (0.0015 + 1e-6 * 32 * 25)  # two batches of 32
    assert truth / 2 <= admission.estimate_s(Work(64, 64 * 20.0)) <= truth * 2


def test_the_estimate_cuts_batches_by_the_token_budget_too() -> None:
    admission = AdmissionControl(max_batch_size=1000, max_batch_tokens=1000)
    for padded in [10, 100, 1000, 50, 500] * 2:
        admission.observe_batch(items=1, real_tokens=padded, longest=padded, seconds=0.01 + 1e-5 * padded)
    one_batch = admission.estimate_s(Work(items=10, tokens=900))
    ten_batches = admission.estimate_s(Work(items=10, tokens=9000))
    assert ten_batches - one_batch == pytest.approx(9 * 0.01 + 8100 * 1e-5 * admission._pad_factor, rel=0.05)


# ---- the batcher's verdicts -------------------------------------------------------------------------
async def trained(model: FakeModel, **kw: float) -> DynamicBatcher:
    """A started batcher whose cost fit has seen batches of several sizes."""
    params: dict[str, float] = {"max_batch_size": 8, "max_wait_ms": 0, "max_queue": 10_000}
    params.update(kw)
    batcher = DynamicBatcher(model, **params)  # type: ignore[arg-type]
    await batcher.start()
    for n_items, n_words in [(1, 2), (2, 8), (4, 4), (1, 30), (8, 2), (2, 16), (1, 4), (4, 12)]:
        await asyncio.gather(*batcher.submit([words(n_words)] * n_items))
    assert batcher._admission.cost.trusted
    return batcher


async def test_an_idle_server_never_refuses_on_an_estimate() -> None:
    model = FakeModel(seconds_per_batch=FIXED_S, seconds_per_token=PER_TOKEN_S)
    batcher = await trained(model)
    # Needs ~1 s of compute, far beyond its 10 ms deadline: admitted, the route's deadline cuts it.
    futures = batcher.submit([words(60)] * 64, deadline_s=0.01)
    assert len(futures) == 64
    for f in futures:
        f.cancel()
    await batcher.stop()


async def test_a_busy_server_refuses_at_once_what_it_cannot_finish(gate: threading.Event) -> None:
    model = FakeModel(seconds_per_batch=FIXED_S, seconds_per_token=PER_TOKEN_S, gate=gate)
    gate.set()
    batcher = await trained(model)
    gate.clear()
    model.forward_started.clear()
    busy = batcher.submit([words(4)])
    await asyncio.to_thread(model.forward_started.wait, 5)
    with pytest.raises(DeadlineExceeded):  # ~1 s of its own compute against a 0.5 s deadline
        batcher.submit([words(60)] * 64, deadline_s=0.5)
    queued = batcher.submit([words(60)] * 32, deadline_s=10)  # ~0.5 s of work now waits
    with pytest.raises(Overloaded) as info:  # fits alone (~0.1 s), not behind the queue
        batcher.submit([words(60)] * 6, deadline_s=0.4)
    assert "Retry-After" in info.value.headers()
    assert len(batcher.submit([words(2)], deadline_s=10)) == 1  # a long deadline still fits
    gate.set()
    await asyncio.gather(*busy, *queued)
    await batcher.stop()


async def test_admission_weighs_chunks_by_tokens_not_count(gate: threading.Event) -> None:
    model = FakeModel(seconds_per_batch=FIXED_S, seconds_per_token=PER_TOKEN_S, gate=gate)
    gate.set()
    batcher = await trained(model, max_batch_size=32)
    gate.clear()
    model.forward_started.clear()
    busy = batcher.submit([words(2)])
    await asyncio.to_thread(model.forward_started.wait, 5)
    tiny = batcher.submit([f"w{i}" for i in range(1000)], deadline_s=5)  # ~32 batches of 1 token
    assert len(tiny) == 1000
    with pytest.raises(DeadlineExceeded):  # the same count of 100-token chunks: ~20 s
        batcher.submit([words(100)] * 1000, deadline_s=5)
    for f in tiny:
        f.cancel()
    gate.set()
    await asyncio.gather(*busy)
    await batcher.stop()
