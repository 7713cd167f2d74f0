"""pad(): Encoded inputs -> right-padded numpy arrays, built with a few vectorised operations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import numpy.typing as npt

from models.base import Encoded


@dataclass(frozen=True, slots=True)
class Padded:
    input_ids: npt.NDArray[np.int64]  # [batch, longest]
    attention_mask: npt.NDArray[np.int64]  # 1 on tokens, 0 on padding
    type_ids: npt.NDArray[np.int64] | None  # None: every input is a single text (all zeros)
    lengths: npt.NDArray[np.int64]  # tokens per input
    prompt_lengths: npt.NDArray[np.int64] | None  # None: no input excludes a prompt from pooling


def pad(batch: Sequence[Encoded], pad_id: int) -> Padded:
    lengths = np.fromiter((len(e.ids) for e in batch), dtype=np.int64, count=len(batch))
    longest = int(lengths.max()) if len(batch) else 0
    # Right padding: row i holds its ids in columns < lengths[i]; the boolean mask fills rows in
    # order, so one assignment places every id.
    mask = np.arange(longest, dtype=np.int64) < lengths[:, None]
    total = int(lengths.sum())
    input_ids = np.full((len(batch), longest), pad_id, dtype=np.int64)
    input_ids[mask] = np.fromiter(chain.from_iterable(e.ids for e in batch), dtype=np.int64, count=total)
    type_ids = None
    if any(e.type_ids is not None for e in batch):
        type_ids = np.zeros((len(batch), longest), dtype=np.int64)
        type_ids[mask] = np.fromiter(
            chain.from_iterable(e.type_ids if e.type_ids is not None else [0] * len(e.ids) for e in batch),
            dtype=np.int64,
            count=total,
        )
    prompt_lengths = None
    if any(e.prompt_length for e in batch):
        prompt_lengths = np.fromiter((e.prompt_length for e in batch), dtype=np.int64, count=len(batch))
    return Padded(input_ids, mask.astype(np.int64), type_ids, lengths, prompt_lengths)
