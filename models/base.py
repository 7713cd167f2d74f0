"""The Model contract the batcher relies on: prepare (tokenise) and forward, both batch-wise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Task = Literal["embed", "classify"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the HTTP layer may know of a model."""

    name: str
    task: Task
    device: str
    dtype: str
    max_tokens: int
    dim: int
    labels: tuple[str, ...] = ()
    special_tokens: int = 0  # added to every input ([CLS], [SEP]...): they count against max_tokens

    @property
    def max_text_tokens(self) -> int:
        """Tokens of text that fit in one input once the special tokens are added."""
        return self.max_tokens - self.special_tokens


@dataclass(frozen=True, slots=True)
class BatchOutput:
    """One row per input, in input order: embeddings (embed) or class probabilities (classify)."""

    vectors: npt.NDArray[np.float32]
    tokens: npt.NDArray[np.int64]
    # L2 norm of each embedding before normalisation (None: unknown, or not an embedding), so a
    # caller that wants raw vectors (TEI's `normalize: false`) gets them as `vector * norm`.
    norms: npt.NDArray[np.float32] | None = None


class Model(Protocol):
    """A loaded model. `prepare` and `forward` run on the batcher's worker threads, never the loop.

    `prepare` tokenises (and moves tensors to the device); `forward` runs the network and
    post-processes. Splitting them lets the batcher tokenise batch N+1 while batch N computes.
    """

    info: ModelInfo

    def prepare(self, texts: Sequence[str]) -> Any: ...

    def forward(self, prepared: Any) -> BatchOutput: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text without special tokens (for chunking and usage accounting)."""
        ...

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Token ids of this model's vocabulary -> texts; raises `TokenIdError` on an unknown id."""
        ...

    def close(self) -> None: ...


class TokenIdError(ValueError):
    """An input holds a token id outside the model's vocabulary."""

    def __init__(self, index: int, token_id: int, vocab_size: int) -> None:
        super().__init__(f"token id {token_id} is outside the vocabulary (0..{vocab_size - 1})")
        self.index = index


@runtime_checkable
class AsyncModel(Protocol):
    """A model whose forward is I/O (a remote upstream): the batcher awaits it on the loop.

    There is no prepare stage; `forward_async` gets the batch's texts.
    """

    info: ModelInfo

    async def forward_async(self, texts: Sequence[str]) -> BatchOutput: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def close(self) -> None: ...
