"""--backend remote: operator-chosen upstreams serve /predict, /stream and /ws (plain or openai)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from models.base import BatchOutput, ModelInfo
from server.allowlist import parse_upstream_url
from server.backend import Backend, JsonItemResult
from server.batcher import ItemResult
from server.config import Settings
from server.errors import ShuttingDown, UpstreamFailed
from server.local import LocalBackend
from server.metrics import Metrics
from server.remote import RemoteBackend, UpstreamError
from server.schemas import MAX_CHUNK_SIZE

log = logging.getLogger("convoy.remote")

# An upstream's tokenizer is unknown here: chunks are cut by characters only, and token
# counts (usage, aggregate weights) are whitespace-separated words.
REMOTE_MAX_TOKENS = MAX_CHUNK_SIZE
_NO_ROW: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)


def count_words(texts: Sequence[str]) -> list[int]:
    return [len(t.split()) for t in texts]


class PlainRemoteBackend:
    """Backend over plain upstreams: POST {"text": chunk} to each URL, round-robin across calls.

    Each chunk's result is the upstream's JSON (task "json"); a chunk whose upstream failed
    raises UpstreamFailed (502) from its future. Runs on the event loop only.
    """

    def __init__(self, remote: RemoteBackend, urls: Sequence[httpx.URL], name: str) -> None:
        self._remote = remote
        self._urls = list(urls)
        self._next = 0
        self._stopped = False
        self._pending: set[asyncio.Task[ItemResult]] = set()
        self._info = ModelInfo(
            name=name, task="json", device="remote", dtype="n/a", max_tokens=REMOTE_MAX_TOKENS, dim=0
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def healthy(self) -> bool:
        return not self._remote.closed

    @property
    def accepting(self) -> bool:
        return self.healthy and not self._stopped

    def submit(
        self, texts: Sequence[str], *, deadline_s: float | None = None
    ) -> list[asyncio.Future[ItemResult]]:
        # Each chunk's time at its upstream is bounded by remote_timeout_s; the request's own
        # deadline is enforced by the route, which cancels these tasks when it passes.
        del deadline_s
        if self._stopped:
            raise ShuttingDown("the server is shutting down")
        calls = self._remote.submit(texts, self._urls, offset=self._next)
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

    def __init__(self, remote: RemoteBackend, bases: Sequence[httpx.URL], name: str) -> None:
        self._remote = remote
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
            answer = await self._remote.post_json(url, payload)
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


def build_remote_backend(settings: Settings, metrics: Metrics, remote: RemoteBackend) -> Backend:
    """The backend for `--backend remote`, over the lifespan's shared RemoteBackend."""
    urls = [parse_upstream_url(u) for u in settings.remote_url]
    if settings.remote_format == "openai":
        return LocalBackend.batched(
            OpenAIEmbeddingsModel(remote, urls, settings.remote_model), settings, metrics
        )
    return PlainRemoteBackend(remote, urls, settings.remote_model)
