"""--backend remote: operator-chosen upstreams serve /predict, /stream and /ws (plain or openai)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import numpy as np
import numpy.typing as npt

from models.base import BatchOutput, Encoded, ModelInfo
from server.batching.backend import Backend, ItemResult
from server.batching.batched import BatchedBackend
from server.chunking import MAX_CHUNK_SIZE
from server.config import Settings
from server.errors import ShuttingDown, UpstreamFailed
from server.metrics import Metrics
from server.remote.allowlist import parse_upstream_url
from server.remote.client import UpstreamClient, UpstreamError

log = logging.getLogger("convoy.remote")

# An upstream's tokenizer is unknown here: chunks are cut by characters only, and token
# counts (usage, aggregate weights) are whitespace-separated words.
REMOTE_MAX_TOKENS = MAX_CHUNK_SIZE
_NO_ROW: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)


def count_words(texts: Sequence[str]) -> list[int]:
    return [len(t.split()) for t in texts]


@dataclass(frozen=True, slots=True)
class JsonItemResult(ItemResult):
    """A chunk answered with arbitrary JSON instead of a row (task "json": plain remote upstreams)."""

    result: Any = None


@dataclass(frozen=True, slots=True)
class UpstreamInfo:
    """What routes know of plain upstreams: a name and the "json" task; no tokenizer, no rows."""

    name: str
    task: Literal["json"] = "json"
    device: str = "remote"
    dtype: str = "n/a"
    max_tokens: int = REMOTE_MAX_TOKENS
    dim: int = 0
    labels: tuple[str, ...] = ()
    special_tokens: int = 0
    pooling: str = ""
    pooling_source: str = ""
    normalized: bool = False
    dense_layers: int = 0
    activation: str = ""
    prompts: tuple[tuple[str, str], ...] = ()
    default_prompt_name: str | None = None
    default_prompt: str | None = None
    matryoshka_dims: tuple[int, ...] = ()

    @property
    def max_text_tokens(self) -> int:
        return self.max_tokens


class UpstreamBackend:
    """Backend over plain upstreams: POST {"text": chunk} to each URL, round-robin across calls.

    Each chunk's result is the upstream's JSON (task "json"); a chunk whose upstream failed
    raises UpstreamFailed (502) from its future. Runs on the event loop only.
    """

    def __init__(self, upstreams: UpstreamClient, urls: Sequence[httpx.URL], name: str) -> None:
        self._upstreams = upstreams
        self._urls = list(urls)
        self._next = 0
        self._stopped = False
        self._pending: set[asyncio.Task[ItemResult]] = set()
        self._info = UpstreamInfo(name)

    @property
    def info(self) -> UpstreamInfo:
        return self._info

    @property
    def healthy(self) -> bool:
        return not self._upstreams.closed

    async def probe(self) -> bool:
        return self.healthy  # each upstream's health is its own; the client itself is what is here

    def submit(
        self,
        texts: Sequence[str],
        *,
        deadline_s: float | None = None,
        prompt: str | None = None,
        query: str | None = None,
        encoded: Sequence[Encoded | None] | None = None,
    ) -> list[asyncio.Future[ItemResult]]:
        # Each chunk's time at its upstream is bounded by remote_timeout_s; the request's own
        # deadline is enforced by the route, which cancels these tasks when it passes. Plain
        # upstreams have no prompts (routes refuse prompt names), rank nothing and take texts.
        del deadline_s, prompt, query, encoded
        if self._stopped:
            raise ShuttingDown("the server is shutting down")
        calls = self._upstreams.submit(texts, self._urls, offset=self._next)
        # Rotate the start so one-chunk requests spread over every upstream too.
        self._next = (self._next + len(texts)) % len(self._urls)
        futures: list[asyncio.Future[ItemResult]] = []
        for call, tokens in zip(calls, count_words(texts), strict=True):
            task = asyncio.create_task(self._item(call, tokens))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            futures.append(task)
        return futures

    async def _item(self, call: asyncio.Task[Any], tokens: int) -> ItemResult:
        # Cancelling this task cancels the awaited call too (never sent if still queued).
        res = await call
        if not res.success:
            log.warning("upstream %s failed: %s", res.url, res.error)
            raise UpstreamFailed(res.error or "the upstream failed")
        return JsonItemResult(
            vector=_NO_ROW,
            tokens=tokens,
            queue_s=res.queue_s,
            inference_s=res.latency_ms / 1000,
            result=res.result,
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return count_words(texts)

    def prompt_tokens(self, prompt: str | None) -> int:
        return 0

    async def start(self) -> None:
        return None

    async def stop(self, timeout_s: float | None = None) -> None:
        self._stopped = True
        if self._pending:
            _, late = await asyncio.wait(set(self._pending), timeout=timeout_s)
            for task in late:
                task.cancel()


class OpenAIEmbeddingsModel:
    """An OpenAI-style embeddings upstream as an AsyncModel: one POST {base}/embeddings per batch.

    The DynamicBatcher awaits `forward_async` on the loop with a whole batch, so chunks of
    concurrent requests share one upstream call. Batches rotate over the base URLs. An upstream
    that refuses the input (4xx) raises a plain error, so the batcher bisects to the culprit;
    one that is down or answers garbage raises UpstreamFailed for the whole batch.
    """

    def __init__(self, upstreams: UpstreamClient, bases: Sequence[httpx.URL], name: str) -> None:
        self._upstreams = upstreams
        self._urls = [b.copy_with(path=b.path.rstrip("/") + "/embeddings") for b in bases]
        self._next = 0
        self.info = ModelInfo(
            name=name, task="embed", device="remote", dtype="float32", max_tokens=REMOTE_MAX_TOKENS, dim=0
        )

    async def forward_async(self, texts: Sequence[str]) -> BatchOutput:
        url = self._urls[self._next]
        self._next = (self._next + 1) % len(self._urls)
        payload = {"input": list(texts), "model": self.info.name, "encoding_format": "float"}
        try:
            answer = await self._upstreams.post_json(url, payload)
        except UpstreamError as exc:
            if exc.input_refused:
                raise ValueError(exc.message) from None
            raise UpstreamFailed(exc.message) from None
        return BatchOutput(
            vectors=parse_embeddings(answer.json, len(texts)),
            tokens=np.asarray(count_words(texts), dtype=np.int64),
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return count_words(texts)

    def close(self) -> None:
        return None  # the shared client is closed by the lifespan


def parse_embeddings(answer: Any, expected: int) -> npt.NDArray[np.float32]:
    """Rows of an OpenAI embeddings answer in input order; UpstreamFailed if it is malformed."""
    try:
        data = answer["data"]
        if not isinstance(data, list) or len(data) != expected:
            raise ValueError(
                f"expected {expected} embeddings, got {len(data) if isinstance(data, list) else 0}"
            )
        ordered = sorted(data, key=lambda d: int(d.get("index", 0)))
        rows = np.asarray([d["embedding"] for d in ordered], dtype=np.float32)
        if rows.ndim != 2 or not np.isfinite(rows).all():
            raise ValueError("embeddings are not finite vectors of one length")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UpstreamFailed(f"the upstream's embeddings answer is malformed: {exc}") from None
    return rows


def build_remote_backend(settings: Settings, metrics: Metrics, upstreams: UpstreamClient) -> Backend:
    """The backend for `--backend remote`, over the lifespan's shared UpstreamClient."""
    urls = [parse_upstream_url(u) for u in settings.remote_url]
    if settings.remote_format == "openai":
        return BatchedBackend.batched(
            OpenAIEmbeddingsModel(upstreams, urls, settings.remote_model), settings, metrics
        )
    return UpstreamBackend(upstreams, urls, settings.remote_model)
