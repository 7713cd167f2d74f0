import dataclasses

import pytest

from server.batching.batched import BatchedBackend, on_accelerator
from server.metrics import Metrics
from tests.support.fake_model import FakeModel
from tests.support.settings import make_settings


@pytest.mark.parametrize(
    ("device", "ahead"), [("cpu", False), ("remote", False), ("cuda", True), ("cuda:1", True), ("mps", True)]
)
def test_batches_are_taken_ahead_only_where_the_forward_pass_frees_the_cpu(device: str, ahead: bool) -> None:
    assert on_accelerator(device) is ahead
    model = FakeModel()
    model.info = dataclasses.replace(model.info, device=device)
    backend = BatchedBackend.batched(model, make_settings(), Metrics(32))
    assert backend.batcher.prepare_ahead is ahead
