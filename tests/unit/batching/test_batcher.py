"""DynamicBatcher with a gated FakeModel: caps, waits, cancellation, isolation, overload."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from models.base import BatchOutput, Encoded
from server.batching.backend import ItemResult
from server.batching.batcher import DynamicBatcher
from server.errors import InferenceFailed, InvalidInput, Overloaded, ShuttingDown
from server.metrics import Metrics
from tests.support.fake_model import FakeModel, fake_vector, record_tokenised


async def started(model: FakeModel, **kw: float) -> DynamicBatcher:
    params: dict[str, float] = {"max_batch_size": 4, "max_wait_ms": 5, "max_queue": 100}
    params.update(kw)
    batcher = DynamicBatcher(
        model,
        max_batch_size=int(params["max_batch_size"]),
        max_wait_ms=params["max_wait_ms"],
        max_queue=int(params["max_queue"]),
        metrics=Metrics(int(params["max_batch_size"])),
    )
    await batcher.start()
    return batcher


async def wait_until_forward_started(model: FakeModel) -> None:
    assert await asyncio.to_thread(model.forward_started.wait, 10)


async def occupy(batcher: DynamicBatcher, model: FakeModel) -> list[asyncio.Future[ItemResult]]:
    """Put the model to work on one item held at its gate, so what comes next queues up."""
    first = batcher.submit(["busy"])
    await wait_until_forward_started(model)
    return first


async def test_batches_never_exceed_max_and_fill_while_busy(gate: threading.Event) -> None:
    model = FakeModel(gate=gate)
    batcher = await started(model, max_batch_size=4)
    first = batcher.submit(["a"])
    await wait_until_forward_started(model)  # model busy with ["a"]; the rest queues up
    rest = batcher.submit([f"t{i}" for i in range(10)])
    gate.set()
    await asyncio.gather(*first, *rest)
    assert model.batch_sizes == [1, 4, 4, 2]
    await batcher.stop()


async def test_sequential_requests_do_not_pay_the_wait() -> None:
    model = FakeModel()
    batcher = await started(model, max_batch_size=32, max_wait_ms=1000)
    began = time.perf_counter()
    for i in range(20):  # concurrency 1: nothing else is ever coming
        await asyncio.gather(*batcher.submit([f"only {i}"]))
    assert time.perf_counter() - began < 1.0  # one max-wait alone would be 1 s
    assert model.batch_sizes == [1] * 20
    await batcher.stop()


async def paced_arrivals(batcher: DynamicBatcher, n: int) -> None:
    """Teach the batcher that two clients overlap and arrivals come every ~2 ms."""
    for i in range(n):
        await asyncio.gather(*batcher.submit([f"warm {i}"]), *batcher.submit([f"warm {i}b"]))
        await asyncio.sleep(0.002)


async def test_idle_model_waits_for_a_burst_to_fill_the_batch() -> None:
    model = FakeModel()
    batcher = await started(model, max_batch_size=8, max_wait_ms=200)
    await paced_arrivals(batcher, 10)
    futures = batcher.submit(["y0"]) + batcher.submit(["y1"])
    for _ in range(3):
        await asyncio.sleep(0)  # let the collector see two items, an idle model, and start waiting
    for i in range(2, 8):
        futures += batcher.submit([f"y{i}"])
    await asyncio.gather(*futures)
    assert model.batch_sizes[-1] == 8
    await batcher.stop()


async def test_wait_ends_by_max_wait_even_if_arrivals_keep_coming() -> None:
    model = FakeModel()
    batcher = await started(model, max_batch_size=1000, max_wait_ms=30)
    await paced_arrivals(batcher, 10)
    stop = asyncio.Event()

    async def trickle() -> None:  # arrivals every ~2 ms forever: the batch never fills
        i = 0
        while not stop.is_set():
            batcher.submit([f"t{i}"])
            i += 1
            await asyncio.sleep(0.002)

    feeder = asyncio.create_task(trickle())
    began = time.perf_counter()
    await asyncio.gather(*batcher.submit(["timed"]))
    waited = time.perf_counter() - began
    stop.set()
    await feeder
    assert waited < 0.03 + 0.25  # the 30 ms bound, plus slack for a loaded CI machine
    await batcher.stop()


async def test_cancelled_items_are_skipped_before_compute(gate: threading.Event) -> None:
    model = FakeModel(gate=gate)
    batcher = await started(model, max_batch_size=4)
    first = await occupy(batcher, model)
    doomed = batcher.submit(["drop me 1", "drop me 2"])
    kept = batcher.submit(["keep"])
    for f in doomed:
        f.cancel()
    gate.set()
    await asyncio.gather(*first, *kept)
    computed = [t for b in model.batches for t in b]
    assert "keep" in computed
    assert not {"drop me 1", "drop me 2"} & set(computed)
    await batcher.stop()


async def test_one_failing_input_fails_alone(gate: threading.Event) -> None:
    gate.set()
    model = FakeModel(gate=gate, fail_if=lambda batch: "poison" in batch)
    batcher = await started(model, max_batch_size=8)
    texts = ["a", "b", "poison", "c", "d"]
    futures = batcher.submit(texts)
    results = await asyncio.gather(*futures, return_exceptions=True)
    for text, res in zip(texts, results, strict=True):
        if text == "poison":
            assert isinstance(res, InferenceFailed)
        else:
            assert not isinstance(res, BaseException)
            np.testing.assert_array_equal(res.vector, fake_vector(text))
    # The batcher keeps serving afterwards.
    (after,) = await asyncio.gather(*batcher.submit(["after"]))
    np.testing.assert_array_equal(after.vector, fake_vector("after"))
    assert batcher.healthy
    await batcher.stop()


async def test_oversized_batch_error_is_retried_as_smaller_batches(gate: threading.Event) -> None:
    gate.set()
    model = FakeModel(gate=gate, fail_if=lambda batch: len(batch) > 2)  # "out of memory" above 2
    batcher = await started(model, max_batch_size=8)
    first = batcher.submit(["w"])
    results = await asyncio.gather(*first, *batcher.submit([f"t{i}" for i in range(8)]))
    assert len(results) == 9
    assert max(model.batch_sizes) <= 2
    await batcher.stop()


async def test_full_queue_is_refused_at_once(gate: threading.Event) -> None:
    model = FakeModel(gate=gate)
    batcher = await started(model, max_batch_size=2, max_queue=4)
    batcher.submit(["busy"])
    await wait_until_forward_started(model)
    accepted = batcher.submit(["1", "2", "3", "4"])
    began = time.perf_counter()
    with pytest.raises(Overloaded) as info:
        batcher.submit(["one too many"])
    assert time.perf_counter() - began < 0.05
    assert "Retry-After" in info.value.headers()
    with pytest.raises(InvalidInput):  # can never fit: a client error, not overload
        batcher.submit([str(i) for i in range(5)])
    gate.set()
    await asyncio.gather(*accepted)
    await batcher.stop()


async def test_stop_drains_accepted_work_then_refuses(gate: threading.Event) -> None:
    model = FakeModel(gate=gate)
    batcher = await started(model, max_batch_size=2)
    futures = batcher.submit([f"q{i}" for i in range(5)])
    stopping = asyncio.create_task(batcher.stop())
    await asyncio.sleep(0)
    with pytest.raises(ShuttingDown):
        batcher.submit(["late"])
    gate.set()
    await stopping
    assert all(f.done() and not f.cancelled() and f.exception() is None for f in futures)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_every_future_gets_its_own_result_under_heavy_concurrency(seed: int) -> None:
    rng = random.Random(seed)
    model = FakeModel()
    batcher = await started(model, max_batch_size=16, max_wait_ms=2, max_queue=100_000)

    async def client(cid: int) -> None:
        for n in range(10):
            texts = [f"c{cid}-r{n}-{k}-" + "w " * rng.randint(0, 30) for k in range(rng.randint(1, 5))]
            results = await asyncio.gather(*batcher.submit(texts))
            for text, res in zip(texts, results, strict=True):
                np.testing.assert_array_equal(res.vector, fake_vector(text))
            if rng.random() < 0.3:
                await asyncio.sleep(0)

    await asyncio.gather(*(client(c) for c in range(64)))
    assert max(model.batch_sizes) <= 16
    assert max(model.batch_sizes) > 1
    await batcher.stop()


async def test_dead_loop_fails_pending_futures_and_reports_unhealthy(
    monkeypatch: pytest.MonkeyPatch, gate: threading.Event
) -> None:
    model = FakeModel(gate=gate)
    batcher = await started(model)

    def broken_take() -> list[object]:
        raise RuntimeError("collector bug")

    monkeypatch.setattr(batcher, "_take", broken_take)
    futures = batcher.submit(["x", "y"])
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)
    assert not batcher.healthy
    await batcher.stop()


async def test_items_in_a_batch_are_sorted_by_length(gate: threading.Event) -> None:
    model = FakeModel(gate=gate)
    batcher = await started(model, max_batch_size=8)
    first = await occupy(batcher, model)
    texts = ["ccc ccc", "a", "bb bb bb bb", "dd"]
    rest = batcher.submit(texts)
    gate.set()
    await asyncio.gather(*first, *rest)
    assert model.batches[1] == sorted(texts, key=len)
    await batcher.stop()


async def test_mixed_lengths_are_grouped_to_cut_padding(gate: threading.Event) -> None:
    model = FakeModel(gate=gate)
    batcher = await started(model, max_batch_size=4)
    first = await occupy(batcher, model)
    short, long = "s", "l" * 400
    rest = batcher.submit([short, long] * 4)  # arrival order alternates short and long
    gate.set()
    await asyncio.gather(*first, *rest)
    assert model.batches[1:] == [[short] * 4, [long] * 4]
    await batcher.stop()


async def test_token_budget_caps_padded_batch_cost(gate: threading.Event) -> None:
    model = FakeModel(gate=gate)
    batcher = DynamicBatcher(model, max_batch_size=32, max_wait_ms=0, max_queue=100, max_batch_tokens=300)
    await batcher.start()
    first = await occupy(batcher, model)
    rest = batcher.submit(["x" * 400] * 6)  # ~100 tokens each at the initial 4 characters a token
    gate.set()
    await asyncio.gather(*first, *rest)
    assert [len(b) for b in model.batches[1:]] == [3, 3]
    await batcher.stop()


class TimedModel(FakeModel):
    """Records when each batch's tokenisation starts and each forward pass ends."""

    def __init__(self) -> None:
        super().__init__(seconds_per_batch=0.03)
        self.events: list[tuple[str, float]] = []

    def collate(self, batch: Sequence[Encoded]) -> list[str]:
        self.events.append(("collate", time.perf_counter()))
        time.sleep(0.005)  # a tokenizer that costs something, as on a GPU host
        return super().collate(batch)

    def forward(self, prepared: list[str]) -> BatchOutput:
        out = super().forward(prepared)
        self.events.append(("forward_end", time.perf_counter()))
        return out


async def trickle(*, prepare_ahead: bool) -> tuple[TimedModel, list[float], list[float]]:
    """A steady trickle that never fills a batch, after a history that makes batches take-ahead
    possible. Returns the model and when each batch's tokenising started and forward pass ended."""
    model = TimedModel()
    batcher = DynamicBatcher(
        model,
        max_batch_size=32,
        max_wait_ms=0,
        max_queue=100,
        metrics=Metrics(32),
        prepare_ahead=prepare_ahead,
    )
    await batcher.start()
    for _ in range(3):  # history: how long a batch computes, how long tokenising takes
        await asyncio.gather(*batcher.submit(["warm up"] * 2))
    model.events.clear()
    futures = []
    for i in range(40):
        futures += batcher.submit([f"trickle {i}"])
        await asyncio.sleep(0.004)  # pacing the arrivals (the load), not synchronisation
    await asyncio.gather(*futures)
    await batcher.stop()
    collates = [at for kind, at in model.events if kind == "collate"]
    ends = [at for kind, at in model.events if kind == "forward_end"]
    return model, collates, ends


async def test_the_next_batch_is_tokenised_while_the_current_one_computes() -> None:
    # Never a full batch: the next batch must still be taken early.
    _, collates, ends = await trickle(prepare_ahead=True)
    # Batch k+1 started tokenising before batch k's forward pass ended.
    overlapped = sum(1 for k in range(min(len(collates) - 1, len(ends))) if collates[k + 1] < ends[k])
    assert len(ends) >= 4
    assert overlapped >= len(ends) - 2, (collates, ends)


async def test_on_a_cpu_the_next_batch_waits_for_the_model_to_free_up() -> None:
    # Where tokenising and the forward pass share the cores, an early batch is only a smaller one.
    model, collates, ends = await trickle(prepare_ahead=False)
    assert len(ends) >= 4
    assert all(collates[k + 1] >= ends[k] for k in range(min(len(collates) - 1, len(ends)))), (collates, ends)
    # The trickle gathered while each batch computed: ~7 arrivals per 30 ms batch.
    assert max(len(b) for b in model.batches) >= 4


async def test_texts_queued_with_their_tokens_are_not_tokenised_again(gate: threading.Event) -> None:
    """Chunking tokenised a long piece to count it (server/api/inputs.py): the batch takes those
    tokens as they are, and tokenises only the texts that came without, with their prompt."""
    model = FakeModel(gate=gate)
    tokenised = record_tokenised(model)
    batcher = await started(model, max_batch_size=8)
    first = await occupy(batcher, model)
    counted = Encoded(list(b"p: long piece, as counted"))  # FakeModel's tokens are the bytes
    rest = batcher.submit(["short", "long piece"], prompt="p: ", encoded=[None, counted])
    gate.set()
    results = await asyncio.gather(*first, *rest)
    assert tokenised == ["busy", "short"]
    assert model.batches[-1] == ["p: short", "p: long piece, as counted"]
    assert [r.tokens for r in results[1:]] == [2, 5]
    await batcher.stop()
