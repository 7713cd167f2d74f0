"""The Backend contract routes rely on, and the helper that awaits one request's chunks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from models.base import ModelInfo
from server.batcher import ItemResult


class Backend(Protocol):
    """Something that turns chunks into results: the local batcher or a remote upstream."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def healthy(self) -> bool: ...

    @property
    def accepting(self) -> bool: ...

    def submit(self, texts: Sequence[str]) -> list[asyncio.Future[ItemResult]]: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    async def start(self) -> None: ...

    async def stop(self, timeout_s: float | None = None) -> None: ...


@runtime_checkable
class TokenDecoder(Protocol):
    """A backend that accepts token ids: it turns them back into text with the model's tokenizer.

    Optional on purpose: a backend without a tokenizer (a remote upstream) only takes text.
    """

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]: ...


async def gather_results(futures: list[asyncio.Future[ItemResult]]) -> list[ItemResult]:
    """Await every chunk of one request; if the request is abandoned, its chunks are cancelled.

    Cancelled futures are skipped by the batcher before they cost compute.
    """
    try:
        return list(await asyncio.gather(*futures))
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
