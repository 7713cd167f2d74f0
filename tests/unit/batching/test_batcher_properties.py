"""DynamicBatcher properties under random programs of submits, cancels, awaits and model faults.

Hypothesis draws a program (submit a few texts, some of them poison; cancel a future; await
one; hold or release the model; let time pass) and a batcher configuration; the program runs
on a fresh event loop against a FakeModel that fails any batch holding a poison text, and any
batch above an "out-of-memory" size. Whatever the interleaving:

- every future that was not cancelled resolves to exactly its own text's row, or, for poison
  texts only, to InferenceFailed;
- no future is left pending once the model is released;
- a future cancelled while its item was still queued is never computed;
- no text is computed twice, no batch exceeds max_batch_size, the queue ends empty.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.batching.backend import ItemResult
from server.batching.batcher import DynamicBatcher
from server.errors import InferenceFailed, InvalidInput, Overloaded
from server.metrics import Metrics
from tests.support.fake_model import FakeModel, fake_vector

POISON = "poison"
# Bound for awaiting anything: far above what any program needs, so a hang fails fast and clearly.
SETTLE_S = 10.0


@dataclass(frozen=True)
class Submit:
    poison: tuple[bool, ...]  # one text per flag


@dataclass(frozen=True)
class Cancel:
    index: int  # into the futures made so far (modulo their count)


@dataclass(frozen=True)
class Await:
    index: int


@dataclass(frozen=True)
class Hold:
    """Close the model's gate: the next forward pass blocks, so work piles up behind it."""


@dataclass(frozen=True)
class Release:
    """Open the gate again."""


@dataclass(frozen=True)
class Yield:
    ticks: int  # event-loop iterations to give the collector


@dataclass(frozen=True)
class Pause:
    ms: float  # real time, so the model thread can make progress meanwhile


Op = Submit | Cancel | Await | Hold | Release | Yield | Pause

ops = st.one_of(
    st.builds(Submit, st.lists(st.booleans(), min_size=1, max_size=5).map(tuple)),
    st.builds(Submit, st.lists(st.just(False), min_size=1, max_size=3).map(tuple)),
    st.builds(Cancel, st.integers(0, 1000)),
    st.builds(Await, st.integers(0, 1000)),
    st.just(Hold()),
    st.just(Release()),
    st.builds(Yield, st.integers(1, 6)),
    st.builds(Pause, st.sampled_from([0.0, 0.5, 2.0])),
)


@dataclass(frozen=True)
class Config:
    max_batch_size: int
    max_wait_ms: float
    max_queue: int
    oom_above: int | None  # a batch larger than this raises, like running out of memory


configs = st.builds(
    Config,
    max_batch_size=st.integers(1, 6),
    max_wait_ms=st.sampled_from([0.0, 1.0]),
    max_queue=st.integers(4, 40),
    oom_above=st.none() | st.integers(1, 4),
)


@dataclass
class Tracked:
    text: str
    future: asyncio.Future[ItemResult]
    cancelled_while_queued: bool = False


@dataclass
class Run:
    model: FakeModel
    batcher: DynamicBatcher
    gate: threading.Event
    tracked: list[Tracked] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    next_id: int = 0
    healthy_at_end: bool = False


def _fails(config: Config, batch: list[str] | tuple[str, ...]) -> bool:
    if any(POISON in t for t in batch):
        return True
    return config.oom_above is not None and len(batch) > config.oom_above


def _queued(batcher: DynamicBatcher) -> set[asyncio.Future[ItemResult]]:
    # The batcher's own queue: an item still here has not been taken into a batch.
    return {item.future for item in batcher._queue}


async def _step(run: Run, op: Op) -> None:
    if isinstance(op, Submit):
        texts = []
        for poisoned in op.poison:
            texts.append(f"t{run.next_id}" + (f" {POISON}" if poisoned else ""))
            run.next_id += 1
        depth = run.batcher.queue_depth
        try:
            futures = run.batcher.submit(texts)
        except (Overloaded, InvalidInput):
            assert run.batcher.queue_depth == depth  # a refusal queues nothing
            run.refused.extend(texts)
            return
        run.tracked.extend(Tracked(t, f) for t, f in zip(texts, futures, strict=True))
    elif isinstance(op, Cancel):
        if run.tracked:
            entry = run.tracked[op.index % len(run.tracked)]
            queued = entry.future in _queued(run.batcher)
            if entry.future.cancel() and queued:
                entry.cancelled_while_queued = True
    elif isinstance(op, Await):
        # Only with the model running: a held model answers nothing until released.
        if run.tracked and run.gate.is_set():
            fut = run.tracked[op.index % len(run.tracked)].future
            await asyncio.wait({fut}, timeout=SETTLE_S)
            assert fut.done(), "an awaited future never resolved while the model was running"
    elif isinstance(op, Hold):
        run.gate.clear()
    elif isinstance(op, Release):
        run.gate.set()
    elif isinstance(op, Yield):
        for _ in range(op.ticks):
            await asyncio.sleep(0)
    elif isinstance(op, Pause):
        await asyncio.sleep(op.ms / 1000)


async def _run_program(config: Config, program: list[Op]) -> Run:
    gate = threading.Event()
    gate.set()
    model = FakeModel(gate=gate, fail_if=lambda batch: _fails(config, batch))
    batcher = DynamicBatcher(
        model,
        max_batch_size=config.max_batch_size,
        max_wait_ms=config.max_wait_ms,
        max_queue=config.max_queue,
        metrics=Metrics(config.max_batch_size),
    )
    await batcher.start()
    run = Run(model, batcher, gate)
    try:
        for op in program:
            await _step(run, op)
        gate.set()
        pending = [t.future for t in run.tracked]
        if pending:
            await asyncio.wait(pending, timeout=SETTLE_S)
        assert all(f.done() for f in pending), "futures left pending after the program ended"
        run.healthy_at_end = batcher.healthy
    finally:
        gate.set()
        await batcher.stop(timeout_s=SETTLE_S)
    return run


def _check(config: Config, run: Run) -> None:
    computed = [t for batch in run.model.batches for t in batch]
    assert len(computed) == len(set(computed)), "a text was computed twice"
    assert all(len(b) <= config.max_batch_size for b in run.model.batches)
    assert not set(run.refused) & set(computed), "a refused text was computed"
    assert run.batcher.queue_depth == 0
    # Admission's view of the queue agrees with the queue.
    assert run.batcher._admission.queued_items == 0
    assert run.batcher._admission.queued_tokens == pytest.approx(0, abs=1e-6)
    assert run.healthy_at_end, "the batcher loop died"
    for entry in run.tracked:
        fut = entry.future
        if entry.cancelled_while_queued:
            assert fut.cancelled()
            assert entry.text not in computed, f"{entry.text!r} was cancelled while queued, yet computed"
            continue
        if fut.cancelled():
            continue  # cancelled after its batch was taken: it may or may not have been computed
        exc = fut.exception()
        if POISON in entry.text:
            assert isinstance(exc, InferenceFailed), f"{entry.text!r} -> {exc!r}"
            assert entry.text not in computed
        else:
            assert exc is None, f"{entry.text!r} failed with {exc!r}"
            np.testing.assert_array_equal(fut.result().vector, fake_vector(entry.text))
            assert entry.text in computed


@given(config=configs, program=st.lists(ops, min_size=1, max_size=30))
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
def test_every_future_gets_its_own_result_under_any_interleaving(config: Config, program: list[Op]) -> None:
    # A fresh event loop per example: nothing (tasks, futures, threads) leaks between them.
    run = asyncio.run(_run_program(config, program))
    _check(config, run)
