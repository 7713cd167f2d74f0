"""LocalBackend: a model loaded in this process behind its DynamicBatcher."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from models.base import Model, ModelInfo
from server.batcher import DynamicBatcher, ItemResult


class LocalBackend:
    """Routes reach a local model only through this; it owns the model and its batcher."""

    def __init__(self, model: Model, batcher: DynamicBatcher) -> None:
        self._model = model
        self.batcher = batcher

    @property
    def info(self) -> ModelInfo:
        return self._model.info

    @property
    def healthy(self) -> bool:
        return self.batcher.healthy

    @property
    def accepting(self) -> bool:
        return self.batcher.accepting

    def submit(self, texts: Sequence[str]) -> list[asyncio.Future[ItemResult]]:
        return self.batcher.submit(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._model.count_tokens(texts)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return self._model.decode(ids)

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self, timeout_s: float | None = None) -> None:
        await self.batcher.stop(timeout_s)
        await asyncio.to_thread(self._model.close)
