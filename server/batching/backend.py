"""The batching contract routes rely on: the Backend protocol, one chunk's result, gather_results."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from models.base import Encoded, TokenSpan

T = TypeVar("T")

# What a backend answers each chunk with: a model's row (embed, classify), or the arbitrary JSON
# of a plain remote upstream ("json"), which is no model task and so lives here, not in models/.
ServedTask = Literal["embed", "classify", "rerank", "json"]


class BackendInfo(Protocol):
    """What routes may know of the model behind a backend (models.base.ModelInfo fits it)."""

    @property
    def name(self) -> str: ...
    @property
    def task(self) -> ServedTask: ...
    @property
    def device(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def labels(self) -> tuple[str, ...]: ...
    @property
    def special_tokens(self) -> int: ...
    @property
    def max_text_tokens(self) -> int: ...
    # What the model's own files say (models.base.ModelInfo documents each): routes echo them
    # on /models and /info, and check requests against them (prompt names, `dimensions`).
    @property
    def pooling(self) -> str: ...
    @property
    def pooling_source(self) -> str: ...
    @property
    def normalized(self) -> bool: ...
    @property
    def dense_layers(self) -> int: ...
    @property
    def activation(self) -> str: ...
    @property
    def prompts(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def default_prompt_name(self) -> str | None: ...
    @property
    def default_prompt(self) -> str | None: ...
    @property
    def matryoshka_dims(self) -> tuple[int, ...]: ...


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One chunk's answer: its row (embedding or probabilities), token count and timings."""

    vector: npt.NDArray[np.float32]
    tokens: int
    queue_s: float
    inference_s: float
    norm: float = 1.0  # the embedding's length before normalisation (1.0 when the model says none)
    raw: npt.NDArray[np.float32] | None = None  # classify/rerank: the logits behind `vector`


class Backend(Protocol):
    """Something that turns chunks into results: a model behind its batcher, or remote upstreams."""

    @property
    def info(self) -> BackendInfo: ...

    @property
    def healthy(self) -> bool:
        """False once the backend cannot serve (a dead batcher, a failed device)."""
        ...

    async def probe(self) -> bool:
        """Check an unhealthy backend for real (a one-token forward pass); True once it serves again."""
        ...

    def submit(
        self,
        texts: Sequence[str],
        *,
        deadline_s: float | None = None,
        prompt: str | None = None,
        query: str | None = None,
        encoded: Sequence[Encoded | None] | None = None,
    ) -> list[asyncio.Future[ItemResult]]:
        """One future per text, in order; may refuse at once (Overloaded) if the deadline
        cannot be met. `prompt` is prepended to each text (None: the model's default prompt,
        "": none); with `query`, each text is a document paired with it (rerank models).
        `encoded[i]`, when set, is text i's model input already made (see LocalTokenizer); only
        a backend that tokenises here is ever given one."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def prompt_tokens(self, prompt: str | None) -> int:
        """Tokens `prompt` (None: the default prompt) adds to each input: room chunking leaves."""
        ...

    async def start(self) -> None: ...

    async def stop(self, timeout_s: float | None = None) -> None: ...


@runtime_checkable
class LocalTokenizer(Protocol):
    """A backend whose model tokenises in this process, so a chunk need be tokenised only once.

    Chunking a long text tokenises its pieces to count them (server/api/inputs.py). With
    `encode_inputs` those tokens are the model's own inputs (prompt and special tokens in, not
    truncated), and `Backend.submit(..., encoded=...)` queues the pieces with them: the batch
    does not tokenise them again. A None entry (a piece never counted) is tokenised as usual.
    """

    @property
    def tokenizes_here(self) -> bool:
        """False when the model behind takes texts (an upstream's API): no inputs to hand over."""
        ...

    def encode_inputs(self, texts: Sequence[str], *, prompt: str | None) -> list[Encoded]:
        """The model inputs of `texts`, untruncated; safe from any thread."""
        ...


@runtime_checkable
class TokenInspector(Protocol):
    """A backend whose tokenizer is here, so it can show how it tokenises (/tokenize)."""

    def tokenize(
        self, texts: Sequence[str], *, add_special_tokens: bool, prompt: str | None
    ) -> list[list[TokenSpan]]: ...


@runtime_checkable
class TokenDecoder(Protocol):
    """A backend that accepts token ids: it turns them back into text with the model's tokenizer.

    Optional on purpose: a backend without a tokenizer (a remote upstream) only takes text.
    """

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]: ...


async def gather_results(futures: Sequence[asyncio.Future[T]]) -> list[T]:
    """Await every chunk of one request; if the request is abandoned, its chunks are cancelled.

    Cancelled futures are skipped by the batcher before they cost compute.
    """
    try:
        if len(futures) == 1:  # most requests: skip gather's wrapper future and callbacks
            return [await futures[0]]
        return list(await asyncio.gather(*futures))
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
