"""The Backend contract routes rely on, and the helpers that chunk and await one request."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from models.base import ModelInfo
from server.batcher import ItemResult
from server.chunking import Chunk, split_text
from server.config import Settings
from server.errors import InvalidInput
from server.limits import check_chars, check_chunks

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JsonItemResult(ItemResult):
    """A chunk answered with arbitrary JSON instead of a row (task "json": plain remote upstreams)."""

    result: Any = None


class Backend(Protocol):
    """Something that turns chunks into results: the local batcher or a remote upstream."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def healthy(self) -> bool: ...

    @property
    def accepting(self) -> bool: ...

    def submit(
        self, texts: Sequence[str], *, deadline_s: float | None = None
    ) -> list[asyncio.Future[ItemResult]]:
        """One future per text, in order; may refuse at once (Overloaded) if the deadline
        cannot be met."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    async def start(self) -> None: ...

    async def stop(self, timeout_s: float | None = None) -> None: ...


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


async def chunk_text(backend: Backend, text: str, chunk_size: int, settings: Settings) -> list[Chunk]:
    """Split `text`, within the request limits; off the event loop when the tokenizer may be
    consulted (long texts)."""
    check_chars(settings, len(text), param="text")
    max_tokens = backend.info.max_text_tokens
    if len(text) <= max_tokens or chunk_size <= max_tokens:
        chunks = split_text(text, chunk_size)
    else:
        chunks = await asyncio.to_thread(
            split_text, text, chunk_size, max_tokens=max_tokens, count_tokens=backend.count_tokens
        )
    if not chunks:
        raise InvalidInput("text has no content to predict on", param="text")
    check_chunks(settings, len(chunks), param="chunk_size")
    return chunks
