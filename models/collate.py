"""pad(): Encoded inputs -> one right-padded int64 block, built with a few vectorised operations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import numpy.typing as npt

from models.base import Encoded


@dataclass(frozen=True, slots=True)
class Padded:
    # [2 or 3, batch, longest]: input ids, attention mask[, type ids]. One array, so the batch
    # becomes one tensor and, on a GPU, one host-to-device copy.
    block: npt.NDArray[np.int64]
    lengths: npt.NDArray[np.int64]  # tokens per input
    prompt_lengths: npt.NDArray[np.int64] | None  # None: no input excludes a prompt from pooling

    @property
    def input_ids(self) -> npt.NDArray[np.int64]:
        return self._row(0)

    @property
    def attention_mask(self) -> npt.NDArray[np.int64]:
        return self._row(1)

    @property
    def type_ids(self) -> npt.NDArray[np.int64] | None:
        return self._row(2) if len(self.block) > 2 else None

    def _row(self, index: int) -> npt.NDArray[np.int64]:
        row: npt.NDArray[np.int64] = self.block[index]
        return row


def pad(batch: Sequence[Encoded], pad_id: int, *, type_ids: bool = False) -> Padded:
    """`type_ids`: include a type-id row (zeros for single texts) for models that take one."""
    lengths = np.fromiter((len(e.ids) for e in batch), dtype=np.int64, count=len(batch))
    longest = int(lengths.max()) if len(batch) else 0
    block = np.empty((3 if type_ids else 2, len(batch), longest), dtype=np.int64)
    # Right padding: row i holds its ids in columns < lengths[i]; the boolean mask fills rows in
    # order, so one assignment places every id.
    mask = np.arange(longest, dtype=np.int64) < lengths[:, None]
    total = int(lengths.sum())
    block[0].fill(pad_id)
    block[0][mask] = np.fromiter(chain.from_iterable(e.ids for e in batch), dtype=np.int64, count=total)
    block[1] = mask
    if type_ids:
        block[2].fill(0)
        if any(e.type_ids is not None for e in batch):
            block[2][mask] = np.fromiter(
                chain.from_iterable(
                    e.type_ids if e.type_ids is not None else [0] * len(e.ids) for e in batch
                ),
                dtype=np.int64,
                count=total,
            )
    prompt_lengths = None
    if any(e.prompt_length for e in batch):
        prompt_lengths = np.fromiter((e.prompt_length for e in batch), dtype=np.int64, count=len(batch))
    return Padded(block, lengths, prompt_lengths)
