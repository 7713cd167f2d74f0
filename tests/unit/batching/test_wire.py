"""The engine's wire: every message survives msgpack, framing copes with any split of the stream."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest

from models.base import Encoded, ModelInfo
from server.batching import wire
from server.batching.backend import ItemResult
from server.errors import (
    ConvoyError,
    InferenceFailed,
    ModelUnavailable,
    Overloaded,
    ShuttingDown,
    UnknownPrompt,
)


def through(message: list[Any]) -> list[Any]:
    """`message` as the peer reads it: packed, then unpacked as the wire's Peer does."""
    packed = msgpack.Packer(use_bin_type=True).pack(message)
    got: list[Any] = []

    class Reader(wire.Peer):
        def received(self, message: list[Any]) -> None:
            got.append(message)

    reader = Reader()
    for i in range(len(packed)):  # one byte at a time: frames split anywhere
        reader.data_received(packed[i : i + 1])
    assert len(got) == 1
    return got[0]


def test_submissions_keep_ids_type_ids_prompt_lengths_and_deadlines() -> None:
    plain = [Encoded([101, 7, 102]), Encoded([101, 8, 9, 102])]
    pairs = [Encoded([101, 1, 102, 2, 102], [0, 0, 0, 1, 1], 2), Encoded([101, 3, 102], None, 0)]
    message = [
        wire.WORK,
        [wire.pack_submission(0, [5, 6], plain, 1.5), wire.pack_submission(1, [7, 8], pairs, None)],
        [3, 4],
    ]
    submissions, cancelled = wire.read_work(through(message))
    assert cancelled == [3, 4]
    assert [(s.model, s.items, s.deadline_s) for s in submissions] == [(0, [5, 6], 1.5), (1, [7, 8], None)]
    assert submissions[0].encoded == plain
    assert submissions[1].encoded == pairs


def test_results_keep_rows_tokens_norms_and_logits() -> None:
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    logits = -np.arange(6, dtype=np.float32).reshape(3, 2)
    answered = [
        (
            10 + i,
            ItemResult(
                vector=rows[i], tokens=i + 3, queue_s=0.5, inference_s=0.25, norm=2.0 + i, raw=logits[i]
            ),
        )
        for i in range(3)
    ]
    message = through([wire.RESULTS, [wire.pack_group(2, answered)], []])
    (group,) = wire.read_groups(message)
    assert group.model == 2 and group.items == [10, 11, 12] and group.tokens == [3, 4, 5]
    assert group.inference_s == [0.25] * 3 and group.norms == [2.0, 3.0, 4.0]
    np.testing.assert_array_equal(group.rows, rows)
    assert group.raw is not None
    np.testing.assert_array_equal(group.raw, logits)


def test_unit_norms_and_no_logits_are_left_out() -> None:
    row = np.ones(3, dtype=np.float32)
    group = wire.pack_group(0, [(1, ItemResult(vector=row, tokens=1, queue_s=0.0, inference_s=0.0))])
    (read,) = wire.read_groups(through([wire.RESULTS, [group], []]))
    assert read.norms is None and read.raw is None


@pytest.mark.parametrize(
    "error",
    [
        Overloaded("the queue is full", retry_after_s=7),
        ShuttingDown("stopping"),
        ModelUnavailable("the device failed"),
        InferenceFailed("the model failed on this input"),
        UnknownPrompt("no such prompt", param="prompt_name"),
    ],
)
def test_errors_arrive_as_the_same_client_facing_error(error: ConvoyError) -> None:
    item, got = wire.read_error(through(wire.pack_error(9, error)))
    assert item == 9
    assert type(got) is type(error)
    assert (got.status, got.code, got.message, got.param) == (
        error.status,
        error.code,
        error.message,
        error.param,
    )
    assert got.headers() == error.headers()


def test_an_unexpected_exception_becomes_a_generic_500_without_its_text() -> None:
    _, got = wire.read_error(through(wire.pack_error(1, RuntimeError("secret internals"))))
    assert type(got) is ConvoyError and got.status == 500
    assert "secret" not in got.message


def test_model_info_round_trips_with_its_tuples() -> None:
    info = ModelInfo(
        name="m",
        task="classify",
        device="cpu",
        dtype="float32",
        max_tokens=128,
        dim=2,
        labels=("no", "yes"),
        prompts=(("query", "query: "),),
        matryoshka_dims=(64, 32),
        activation="softmax",
    )
    assert wire.read_info(through([wire.pack_info(info)])[0]) == info
