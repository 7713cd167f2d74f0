"""Faults a GPU host meets, shown on CPU: a failed device, out-of-memory retries, non-finite rows."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Sequence

import numpy as np
import pytest

from models.base import BatchOutput, Encoded
from server.batching.batcher import DynamicBatcher
from server.batching.faults import Failure, is_device_failure
from server.errors import InferenceFailed, ModelUnavailable, NonFiniteOutput
from tests.support.fake_model import FakeModel, fake_vector, mentions


class AcceleratorError(RuntimeError):
    """Named as torch's (2.8+) class for sticky device errors; the batcher matches the name."""


CUDA_ASSERT = "CUDA error: device-side assert triggered\nCUDA kernel errors might be asynchronously reported"


async def started(model: FakeModel, **kw: int) -> DynamicBatcher:
    params = {"max_batch_size": 4, "max_wait_ms": 0, "max_queue": 100, **kw}
    batcher = DynamicBatcher(model, **params)  # type: ignore[arg-type]
    await batcher.start()
    return batcher


@pytest.mark.parametrize(
    ("exc", "device"),
    [
        (RuntimeError(CUDA_ASSERT), True),
        (RuntimeError("CUDA error: an illegal memory access was encountered"), True),
        (AcceleratorError("CUDA error: unspecified launch failure"), True),
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), False),
        (RuntimeError("index out of range in self"), False),
        (ValueError("bad input"), False),
    ],
)
def test_device_failures_are_told_from_input_failures(exc: Exception, device: bool) -> None:
    assert is_device_failure(exc) is device


def test_a_failure_keeps_no_traceback() -> None:
    try:
        raise RuntimeError("first line\nsecond line")
    except RuntimeError as exc:
        failure = Failure.of(exc)
    assert failure == Failure("RuntimeError", "first line")
    assert not any(isinstance(getattr(failure, f), BaseException) for f in ("type_name", "message"))


@pytest.mark.parametrize("error", [lambda: RuntimeError(CUDA_ASSERT), lambda: AcceleratorError(CUDA_ASSERT)])
async def test_a_failed_device_turns_the_batcher_unhealthy_until_a_probe_passes(error: object) -> None:
    broken = {"now": True}
    model = FakeModel(fail_if=lambda texts: broken["now"] and any("boom" in t for t in texts or ["ok"]))
    model.error = error  # type: ignore[assignment]
    batcher = await started(model)
    futures = batcher.submit(["fine", "boom"])
    results = await asyncio.gather(*futures, return_exceptions=True)
    # Not bisected: on a failed device every retry fails too. The whole batch gets 503.
    assert all(isinstance(r, ModelUnavailable) and r.status == 503 for r in results)
    assert not batcher.healthy and batcher.unhealthy_since is not None
    with pytest.raises(ModelUnavailable, match="device failed"):
        batcher.submit(["new work"])
    model.fail_if = lambda texts: broken["now"]  # the probe's one-token forward fails too
    assert not await batcher.probe()
    assert not batcher.healthy
    broken["now"] = False  # a transient fault: the next probe passes and serving resumes
    assert await batcher.probe()
    assert batcher.healthy and batcher.unhealthy_since is None
    (ok,) = await asyncio.gather(*batcher.submit(["again"]))
    np.testing.assert_array_equal(ok.vector, fake_vector("again"))
    await batcher.stop()


async def test_an_input_error_is_isolated_and_leaves_the_batcher_healthy() -> None:
    model = FakeModel(fail_if=mentions("bad"))
    batcher = await started(model)
    results = await asyncio.gather(*batcher.submit(["good", "bad", "fine"]), return_exceptions=True)
    assert isinstance(results[1], InferenceFailed)
    assert [type(r) for r in (results[0], results[2])] == [type(results[0])] * 2
    assert not isinstance(results[0], Exception)
    assert batcher.healthy
    await batcher.stop()


class _Batch:
    """A prepared batch that can be watched with a weakref (a stand-in for its GPU tensors)."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)


class OomModel(FakeModel):
    """Raises an out-of-memory error on batches of more than one item, as a too-big GPU batch would.

    Each call checks that the last failed batch is already freed: the retry must not run while
    the failed forward's inputs (and, on a GPU, activations) are still alive.
    """

    def __init__(self) -> None:
        super().__init__()
        self.failed: list[weakref.ref[_Batch]] = []
        self.alive_during_retry: list[bool] = []

    def collate(self, batch: Sequence[Encoded]) -> _Batch:  # type: ignore[override]
        return _Batch(super().collate(batch))

    def forward(self, prepared: _Batch) -> BatchOutput:  # type: ignore[override]
        gc.collect()  # only reference cycles need it; a traceback alone keeps frames by reference
        self.alive_during_retry += [ref() is not None for ref in self.failed]
        if len(prepared.texts) > 1:
            self.failed.append(weakref.ref(prepared))
            activations = np.ones((len(prepared.texts), 1024), dtype=np.float32)  # noqa: F841 (held by the frame)
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return super().forward(prepared.texts)


async def test_out_of_memory_retries_run_after_the_failed_batch_is_freed() -> None:
    model = OomModel()
    batcher = await started(model)
    results = await asyncio.gather(*batcher.submit(["a", "b", "c", "d"]))
    assert [r.vector.tolist() for r in results] == [fake_vector(t).tolist() for t in "abcd"]
    assert model.failed and model.alive_during_retry
    assert not any(model.alive_during_retry), "a retry ran while a failed batch was still referenced"
    assert batcher.healthy
    await batcher.stop()


async def test_a_non_finite_row_fails_only_its_own_item() -> None:
    def vector(text: str) -> np.ndarray:
        row = fake_vector(text)
        return row * np.float32("inf") if "overflow" in text else row

    model = FakeModel(vector_for=vector)
    batcher = await started(model)
    results = await asyncio.gather(
        *batcher.submit(["fine", "overflow here", "also fine"]), return_exceptions=True
    )
    error = results[1]
    assert isinstance(error, NonFiniteOutput) and error.status == 500 and error.code == "non_finite_output"
    assert "float32" in error.message
    np.testing.assert_array_equal(results[0].vector, fake_vector("fine"))  # type: ignore[union-attr]
    np.testing.assert_array_equal(results[2].vector, fake_vector("also fine"))  # type: ignore[union-attr]
    assert batcher.healthy
    await batcher.stop()
