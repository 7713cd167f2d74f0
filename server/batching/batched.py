"""BatchedBackend: a model behind its DynamicBatcher (a local network, or an AsyncModel upstream)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from models.base import AsyncModel, Encoded, Model, ModelInfo, TokenSpan
from server.batching.backend import ItemResult
from server.batching.batcher import DynamicBatcher
from server.config import Settings
from server.errors import InvalidInput
from server.metrics import Metrics

# On a CPU compute grows with every padded token and big batches buy little, so a small budget
# keeps batches of similar lengths (measured: mixed lengths at concurrency 64, 27 vs 16 chunks/s
# with 2048 vs 16384); a GPU has spare parallelism for large batches.
CPU_BATCH_TOKENS = 2048
GPU_BATCH_TOKENS = 16384
# Inputs per forward pass. On a GPU the token budget should bind, not a count: 32 inputs of
# 256 tokens are 8,192 tokens, half the budget, and short-text batches stay launch-bound
# (text-embeddings-inference caps no count by default). On a CPU, 32 is where throughput levels.
CPU_BATCH_SIZE = 32
GPU_BATCH_SIZE = 1024


def default_batch_tokens(device: str) -> int:
    return CPU_BATCH_TOKENS if device == "cpu" else GPU_BATCH_TOKENS


def default_batch_size(device: str) -> int:
    return GPU_BATCH_SIZE if device.startswith("cuda") else CPU_BATCH_SIZE


def on_accelerator(device: str) -> bool:
    """Whether the forward pass runs on a device of its own ("cuda:0", "mps"), not on the CPU the
    tokenizer needs or behind an upstream's HTTP API."""
    return device.partition(":")[0] not in ("cpu", "remote")


def batching_settings(settings: Settings, device: str) -> Settings:
    """`settings` with the batch caps it left to the device filled in (what /models reports)."""
    return settings.model_copy(
        update={
            "max_batch_size": settings.max_batch_size or default_batch_size(device),
            "max_batch_tokens": settings.max_batch_tokens or default_batch_tokens(device),
        }
    )


class BatchedBackend:
    """Routes reach a batched model only through this; it owns the model and its batcher."""

    def __init__(self, model: Model | AsyncModel, batcher: DynamicBatcher) -> None:
        self._model = model
        self.batcher = batcher
        # A local network tokenises here; an AsyncModel (an upstream's API) takes texts.
        self._tokenizes = not isinstance(model, AsyncModel)

    @classmethod
    def batched(cls, model: Model | AsyncModel, settings: Settings, metrics: Metrics) -> BatchedBackend:
        """`model` behind a DynamicBatcher configured by `settings`."""
        resolved = batching_settings(settings, model.info.device)
        assert resolved.max_batch_size is not None
        batcher = DynamicBatcher(
            model,
            max_batch_size=resolved.max_batch_size,
            max_batch_tokens=resolved.max_batch_tokens,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
            metrics=metrics,
            prepare_ahead=on_accelerator(model.info.device),
        )
        return cls(model, batcher)

    @property
    def info(self) -> ModelInfo:
        return self._model.info

    @property
    def healthy(self) -> bool:
        return self.batcher.healthy

    async def probe(self) -> bool:
        return await self.batcher.probe()

    def submit(
        self,
        texts: Sequence[str],
        *,
        deadline_s: float | None = None,
        prompt: str | None = None,
        query: str | None = None,
        encoded: Sequence[Encoded | None] | None = None,
    ) -> list[asyncio.Future[ItemResult]]:
        return self.batcher.submit(texts, deadline_s=deadline_s, prompt=prompt, query=query, encoded=encoded)

    @property
    def tokenizes_here(self) -> bool:
        return self._tokenizes

    def encode_inputs(self, texts: Sequence[str], *, prompt: str | None) -> list[Encoded]:
        """Untruncated model inputs (server/batching/backend.py LocalTokenizer); any thread."""
        if not self._tokenizes:
            raise TypeError(f"model {self.info.name!r} takes texts, not tokens")
        return self._model.encode(texts, prompt=prompt, truncate=False)  # type: ignore[union-attr]

    def submit_encoded(
        self, encoded: Sequence[Encoded], *, deadline_s: float | None = None, tag: object = None
    ) -> list[asyncio.Future[ItemResult]]:
        """Chunks tokenised by a front-end process (the engine's way in, server/batching/engine.py)."""
        return self.batcher.submit_encoded(encoded, deadline_s=deadline_s, tag=tag)

    def observe_batches(self, callback: Callable[[list[object]], None]) -> None:
        """`callback(tags)` on the loop for each batch taken: the `tag` of each of its chunks."""
        self.batcher.on_batch = callback

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._model.count_tokens(texts)

    def prompt_tokens(self, prompt: str | None) -> int:
        effective = self._model.info.default_prompt if prompt is None else prompt
        if not effective or isinstance(self._model, AsyncModel):
            return 0
        return self._model.prompt_tokens(effective)

    def tokenize(
        self, texts: Sequence[str], *, add_special_tokens: bool, prompt: str | None
    ) -> list[list[TokenSpan]]:
        return self._local_model("tokenize").tokenize(
            texts, add_special_tokens=add_special_tokens, prompt=prompt
        )

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return self._local_model("decode token ids").decode(ids)

    def _local_model(self, what: str) -> Model:
        if isinstance(self._model, AsyncModel):  # an upstream: its tokenizer is not here
            raise InvalidInput(f"model {self.info.name!r} is served by an upstream: Convoy cannot {what}")
        return self._model

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self, timeout_s: float | None = None) -> None:
        await self.batcher.stop(timeout_s)
        await asyncio.to_thread(self._model.close)
