"""pad(): right padding, the attention mask from lengths, type ids and prompt lengths."""

from __future__ import annotations

import numpy as np

from models.base import Encoded
from models.collate import pad


def test_right_padding_and_the_mask_follow_the_lengths() -> None:
    padded = pad([Encoded([1, 2, 3]), Encoded([4]), Encoded([5, 6])], pad_id=9)
    np.testing.assert_array_equal(padded.input_ids, [[1, 2, 3], [4, 9, 9], [5, 6, 9]])
    np.testing.assert_array_equal(padded.attention_mask, [[1, 1, 1], [1, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(padded.lengths, [3, 1, 2])
    assert padded.type_ids is None and padded.prompt_lengths is None
    assert padded.input_ids.dtype == np.int64


def test_pairs_keep_their_type_ids_and_singles_get_zeros() -> None:
    padded = pad([Encoded([1, 2, 3, 4], type_ids=[0, 0, 1, 1]), Encoded([5, 6])], pad_id=0, type_ids=True)
    assert padded.type_ids is not None
    np.testing.assert_array_equal(padded.type_ids, [[0, 0, 1, 1], [0, 0, 0, 0]])
    singles = pad([Encoded([1, 2]), Encoded([3])], pad_id=0, type_ids=True)
    assert singles.type_ids is not None
    np.testing.assert_array_equal(singles.type_ids, [[0, 0], [0, 0]])
    assert singles.block.shape == (3, 2, 2)  # one array: one tensor, one device copy


def test_models_without_type_ids_get_no_row() -> None:
    padded = pad([Encoded([1, 2, 3, 4], type_ids=[0, 0, 1, 1])], pad_id=0)
    assert padded.type_ids is None and padded.block.shape == (2, 1, 4)


def test_prompt_lengths_travel_per_input() -> None:
    padded = pad([Encoded([1, 2, 3], prompt_length=2), Encoded([4, 5])], pad_id=0)
    assert padded.prompt_lengths is not None
    np.testing.assert_array_equal(padded.prompt_lengths, [2, 0])
