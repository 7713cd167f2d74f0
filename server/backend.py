"""The Backend contract routes rely on, and the helper that awaits one request's chunks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

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

    def submit(
        self, texts: Sequence[str], *, deadline_s: float | None = None
    ) -> list[asyncio.Future[ItemResult]]:
        """One future per text, in order; may refuse at once (Overloaded) if the deadline
        cannot be met."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    async def start(self) -> None: ...

    async def stop(self, timeout_s: float | None = None) -> None: ...


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
