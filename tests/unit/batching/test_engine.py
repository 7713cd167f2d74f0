"""Engine and EngineClient over a real Unix socket (one loop): answers, batching across front-ends,
cancellation reaching the batcher, refusals, and every future failing when the engine goes."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from models.base import Encoded
from server.batching.backend import ItemResult
from server.batching.batched import BatchedBackend
from server.batching.engine import Engine
from server.batching.engine_client import INLINE_CHARS, EngineBackend, engine_backends
from server.errors import ModelUnavailable, Overloaded
from server.metrics import Metrics
from tests.support.fake_model import FakeModel, fake_vector, mentions, record_tokenised
from tests.support.metrics import wait_until
from tests.support.settings import make_settings


class Served:
    """An engine over FakeModel behind a real DynamicBatcher, listening on a Unix socket."""

    def __init__(self, model: FakeModel, path: Path, **settings: float) -> None:
        self.model = model
        self.path = str(path)
        self.metrics = Metrics(32)
        self.backend = BatchedBackend.batched(model, make_settings(**settings), self.metrics)
        self.engine = Engine([self.backend], self.metrics)
        self.frontends: list[EngineBackend] = []

    async def start(self) -> None:
        await self.backend.start()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        sock.listen(8)
        await self.engine.start(sock)

    async def frontend(self, index: int) -> EngineBackend:
        (backend,) = await engine_backends(self.path, index, [self.model])
        self.frontends.append(backend)
        return backend

    async def stop(self) -> None:
        for frontend in self.frontends:
            frontend._client.close()
        await self.engine.stop(5)
        await self.backend.stop(5)

    def sample(self, name: str, **labels: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        text = generate_latest(self.metrics.registry).decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0


@pytest.fixture
async def gated(tmp_path: Path, gate: threading.Event) -> AsyncIterator[Served]:
    served = Served(
        FakeModel(gate=gate, gate_if=mentions("gate")), tmp_path / "engine.sock", max_batch_size=8
    )
    await served.start()
    yield served
    gate.set()
    await served.stop()


async def occupy(served: Served, frontend: EngineBackend) -> list[asyncio.Future[ItemResult]]:
    """The model busy on a gated chunk, so what is submitted next queues in the engine."""
    busy = frontend.submit(["gate"])
    assert await asyncio.to_thread(served.model.forward_started.wait, 10)
    return busy


async def test_answers_are_the_models_rows_with_its_info(gated: Served) -> None:
    frontend = await gated.frontend(0)
    assert frontend.info == gated.model.info and frontend.healthy
    texts = ["alpha", "beta gamma", "δ unicode"]
    results = await asyncio.gather(*frontend.submit(texts, deadline_s=10))
    for text, result in zip(texts, results, strict=True):
        np.testing.assert_array_equal(result.vector, fake_vector(text))
        assert result.tokens == len(text.split())
    await frontend.stop()


async def test_batches_mix_the_chunks_of_both_front_ends(gated: Served, gate: threading.Event) -> None:
    first, second = await gated.frontend(0), await gated.frontend(1)
    busy = await occupy(gated, first)
    mine = first.submit(["one", "two"])
    theirs = second.submit(["three"])
    # Both WORK messages must have reached the engine before the gate opens.
    await wait_until(lambda: gated.backend.batcher.queue_depth == 3, "the engine to catch up")
    gate.set()
    results = await asyncio.gather(*busy, *mine, *theirs)
    assert [r.vector[1] for r in results[1:]] == [fake_vector(t)[1] for t in ("one", "two", "three")]
    assert sorted(gated.model.batches[1]) == ["one", "three", "two"]  # one batch, both front-ends
    assert gated.sample("convoy_batch_frontends_count", model="fake") == 2
    assert gated.sample("convoy_batch_frontends_bucket", model="fake", le="1.0") == 1


async def test_a_cancelled_chunk_is_dropped_by_the_engine_before_compute(
    gated: Served, gate: threading.Event
) -> None:
    frontend = await gated.frontend(0)
    busy = await occupy(gated, frontend)
    (doomed,) = frontend.submit(["doomed"])
    (kept,) = frontend.submit(["kept"])
    await wait_until(lambda: gated.backend.batcher.queue_depth == 2, "the engine to catch up")
    doomed.cancel()  # the client left: its cancellation travels to the engine
    (connection,) = gated.engine._frontends
    await wait_until(
        lambda: len(connection._futures) == 2, "the engine to catch up"
    )  # busy and kept, once doomed is cancelled there
    gate.set()
    await asyncio.gather(*busy, kept)
    assert "doomed" not in gated.model.seen and "kept" in gated.model.seen
    assert gated.sample("convoy_cancelled_total", model="fake") == 1
    assert frontend._client.pending == 0


async def test_a_refusal_in_the_engine_reaches_the_futures_with_its_status(
    tmp_path: Path, gate: threading.Event
) -> None:
    served = Served(
        FakeModel(gate=gate, gate_if=mentions("gate")), tmp_path / "e.sock", max_batch_size=1, max_queue=2
    )
    await served.start()
    frontend = await served.frontend(0)
    busy = await occupy(served, frontend)
    queued = frontend.submit(["a", "b"])
    refused = frontend.submit(["c"])
    with pytest.raises(Overloaded) as caught:
        await refused[0]
    assert caught.value.headers() == {"Retry-After": "1"}
    gate.set()
    await asyncio.gather(*busy, *queued)
    await served.stop()


async def test_a_large_tick_is_tokenised_off_the_loop_and_answered_in_order(gated: Served) -> None:
    frontend = await gated.frontend(0)
    texts = [f"{i} " + "x" * 1000 for i in range(INLINE_CHARS // 1000 + 8)]
    results = await asyncio.gather(*frontend.submit(texts))
    assert [r.vector[0] for r in results] == [len(t) for t in texts]


async def test_when_the_engine_goes_every_pending_future_fails_with_503(gated: Served) -> None:
    frontend = await gated.frontend(0)
    busy = await occupy(gated, frontend)
    queued = frontend.submit(["waiting"])
    await wait_until(lambda: gated.backend.batcher.queue_depth == 1, "the engine to catch up")
    for connection in list(gated.engine._frontends):
        connection.close()  # as the engine process dying closes its sockets
    for fut in [*busy, *queued]:
        with pytest.raises(ModelUnavailable):
            await fut
    assert not frontend.healthy
    assert not await frontend.probe()
    with pytest.raises(ModelUnavailable):
        frontend.submit(["after"])


async def test_a_front_end_that_leaves_has_its_queued_chunks_cancelled(
    gated: Served, gate: threading.Event
) -> None:
    stays, leaves = await gated.frontend(0), await gated.frontend(1)
    busy = await occupy(gated, stays)
    leaves.submit(["orphan"])
    await wait_until(lambda: gated.backend.batcher.queue_depth == 1, "the engine to catch up")
    leaves._client.close()
    await wait_until(lambda: gated.engine.frontends == 1, "the engine to catch up")
    (later,) = stays.submit(["later"])
    gate.set()
    await asyncio.gather(*busy, later)
    assert "orphan" not in gated.model.seen


async def test_inputs_chunking_tokenised_are_sent_as_they_are(gated: Served) -> None:
    """A long text's chunks come tokenised from chunking (server/api/inputs.py): a request whose
    chunks all have their inputs sends them untouched; one with any missing is tokenised whole."""
    frontend = await gated.frontend(0)
    tokenised = record_tokenised(gated.model)
    counted = Encoded(list(b"p: long piece, as counted"))  # FakeModel's tokens are the bytes
    await asyncio.gather(*frontend.submit(["long piece"], prompt="p: ", encoded=[counted]))
    assert tokenised == [] and gated.model.seen == ["p: long piece, as counted"]
    await asyncio.gather(*frontend.submit(["short", "long piece"], prompt="p: ", encoded=[None, counted]))
    assert tokenised == ["short", "long piece"]
    assert gated.model.seen[1:] == ["p: short", "p: long piece"]
    await frontend.stop()
