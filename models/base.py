"""The Model contract the server relies on: encode (tokenise), collate (pad), forward (compute)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Task = Literal["embed", "classify", "rerank"]

# ModelInfo.activation values for classify/rerank heads ("" for embed).
Activation = Literal["softmax", "sigmoid", "none", ""]


@dataclass(frozen=True, slots=True)
class Encoded:
    """One model input after tokenisation: what the batcher queues and collate() pads."""

    ids: list[int]  # special tokens included; within max_tokens unless encode(truncate=False)
    type_ids: list[int] | None = None  # None = all zeros (single texts); set for pairs
    prompt_length: int = 0  # leading tokens pooling excludes (include_prompt false), else 0


@dataclass(frozen=True, slots=True)
class TokenSpan:
    """One token of /tokenize (TEI's shape). `start`/`stop` are character offsets into the text
    that was tokenised (prompt included); special tokens have none and carry their own text."""

    id: int
    text: str
    special: bool
    start: int | None
    stop: int | None


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
    pooling: str = ""  # embed: effective mode(s), "+"-joined in concatenation order ("cls+mean")
    pooling_source: str = ""  # where the pooling came from: "modules.json", "override", "default (...)"
    normalized: bool = False  # embed: output rows are unit-length (the model has a Normalize module)
    dense_layers: int = 0  # embed: Dense modules applied after pooling
    activation: Activation = ""  # classify/rerank: what turns logits into scores
    prompts: tuple[tuple[str, str], ...] = ()  # (name, text): the model's config plus server defaults
    default_prompt_name: str | None = None
    default_prompt: str | None = None  # text applied when a request names no prompt (None: none)
    matryoshka_dims: tuple[int, ...] = ()  # dimensions `dimensions` may truncate to; () = not allowed
    do_lower_case: bool = False

    @property
    def max_text_tokens(self) -> int:
        """Tokens of text that fit in one input once the special tokens are added."""
        return self.max_tokens - self.special_tokens


@dataclass(frozen=True, slots=True)
class BatchOutput:
    """One row per input, in input order."""

    # embed: exactly what sentence-transformers returns; classify/rerank: scores after the activation
    vectors: npt.NDArray[np.float32]
    tokens: npt.NDArray[np.int64]  # len(ids) per input, special tokens included
    # embed with Normalize: each row's L2 norm before normalising, so a caller that wants raw
    # vectors (TEI's `normalize: false`) gets them as `vector * norm`. None otherwise.
    norms: npt.NDArray[np.float32] | None = None
    raw: npt.NDArray[np.float32] | None = None  # classify/rerank: the logits


class Model(Protocol):
    """A loaded model.

    Threads: `encode`, `encode_pairs`, `count_tokens`, `prompt_tokens`, `tokenize` and `decode`
    may be called from any thread, concurrently. `collate` runs on the batcher's tokenise thread
    and `forward` on its model thread, so batch N+1 is padded while batch N computes.
    """

    info: ModelInfo

    def encode(
        self, texts: Sequence[str], *, prompt: str | None = None, truncate: bool = True
    ) -> list[Encoded]:
        """Tokenise texts, `prompt` prepended (None: `info.default_prompt`; "": no prompt).

        truncate=False returns over-long inputs whole so the caller can refuse them by len(ids).
        """
        ...

    def encode_pairs(
        self, query: str, documents: Sequence[str], *, prompt: str | None = None, truncate: bool = True
    ) -> list[Encoded]:
        """(query, document) pairs for rerank models, truncated longest-first as CrossEncoder does."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text without special tokens (for chunking and usage accounting)."""
        ...

    def prompt_tokens(self, prompt: str) -> int:
        """Tokens `prompt` adds to an input (so chunking can leave room for it)."""
        ...

    def tokenize(
        self, texts: Sequence[str], *, add_special_tokens: bool = True, prompt: str | None = None
    ) -> list[list[TokenSpan]]:
        """Per input, per token: id, text, special, character offsets (/tokenize)."""
        ...

    def collate(self, batch: Sequence[Encoded]) -> Any:
        """Pad a batch into tensors on the model's device."""
        ...

    def forward(self, collated: Any) -> BatchOutput:
        """The network, then pooling/Dense/Normalize (embed) or the activation (classify/rerank)."""
        ...

    def prepare(self, texts: Sequence[str]) -> Any:
        """collate(encode(texts)): the path the batcher uses until it queues Encoded inputs."""
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
