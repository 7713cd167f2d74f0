"""UpstreamClient: the shared upstream HTTP client: one pooled httpx client, per-upstream slots, retries."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from server.batching.backend import gather_results
from server.config import Settings
from server.errors import InvalidInput, Overloaded, ShuttingDown
from server.metrics import Metrics
from server.remote.allowlist import AllowList

log = logging.getLogger("convoy.remote")

# An answer is read into memory; a garbage-spewing upstream must not be able to exhaust it.
MAX_ANSWER_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RemoteResult:
    """One chunk's outcome: exactly one per chunk, success (`result`) or failure (`error`)."""

    index: int
    url: str
    success: bool
    result: Any
    error: str | None
    latency_ms: float  # first attempt sent -> final answer, retries and back-off included
    queue_s: float  # waited for a free slot at the upstream


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful call: the upstream's JSON and where the time went."""

    json: Any
    latency_ms: float
    queue_s: float


class UpstreamError(Exception):
    """A call failed at its upstream; the message is safe to show the client.

    `status` is the last HTTP status (None: no HTTP answer). A 4xx other than 429 says the
    input was refused, which callers may treat differently from an upstream that is down.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.latency_ms = 0.0
        self.queue_s = 0.0

    def __str__(self) -> str:
        return self.message

    @property
    def input_refused(self) -> bool:
        return self.status is not None and 400 <= self.status < 500 and self.status != 429


class _Slots:
    """At most `limit` requests in flight per upstream; a URL's semaphore lives while in use."""

    def __init__(self, limit: int, on_abandoned: Callable[[], None]) -> None:
        self._limit = limit
        self._on_abandoned = on_abandoned
        self._sems: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        sem, users = self._sems.setdefault(key, (asyncio.Semaphore(self._limit), [0]))
        users[0] += 1
        try:
            try:
                await sem.acquire()
            except asyncio.CancelledError:
                self._on_abandoned()  # cancelled while queued: this chunk is never sent
                raise
            try:
                yield
            finally:
                sem.release()
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._sems[key]


class UpstreamClient:
    """Sends chunks to upstream URLs over one shared, pooled httpx client (made in the lifespan).

    Everything runs on the event loop. Each chunk is a task: it waits for a slot at its
    upstream (at most `concurrency` requests in flight per URL), then posts, retrying
    connection errors, 429 and 5xx with back-off (honouring Retry-After), all within
    `timeout_s`. A chunk's task never raises: it ends in a RemoteResult, so a failing, slow or
    garbage-answering upstream affects only its own chunks. Cancelling a task that still waits
    for its slot means the chunk is never sent (counted in `convoy_cancelled_total`).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        allow: AllowList,
        concurrency: int,
        timeout_s: float,
        retries: int,
        backoff_s: float,
        max_queue: int,
        metrics: Metrics | None = None,
        label: str = "remote",
    ) -> None:
        self.client = client
        self.allow = allow
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_queue = max_queue
        self.label = label
        self._metrics = metrics
        self._slots = _Slots(concurrency, self._count_abandoned)
        self._tasks: set[asyncio.Task[RemoteResult]] = set()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics | None) -> UpstreamClient:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.remote_timeout_s),
            follow_redirects=False,  # a redirect could lead past the allowlist
            # Per-upstream semaphores bound the connections; a pool cap would only queue them.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
            trust_env=False,  # upstreams are called directly, never through env proxies
        )
        return cls(
            client,
            allow=AllowList(settings.remote_allow),
            concurrency=settings.remote_concurrency,
            timeout_s=settings.remote_timeout_s,
            retries=settings.remote_retries,
            backoff_s=settings.remote_backoff_s,
            max_queue=settings.max_queue,
            metrics=metrics,
            label=settings.remote_model,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self, timeout_s: float | None = None) -> None:
        """Refuse new chunks, let the accepted ones finish (within `timeout_s`), close the client."""
        self._closed = True
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        await self.client.aclose()

    # ---- fan-out ---------------------------------------------------------------------------
    async def process(self, texts: Sequence[str], raw_urls: Sequence[str]) -> list[RemoteResult]:
        """POST /process: check every URL against the allowlist (before any traffic), fan out."""
        urls = self.allow.check(raw_urls)
        return await gather_results(self.submit(texts, urls))

    def submit(
        self, texts: Sequence[str], urls: Sequence[httpx.URL], *, offset: int = 0
    ) -> list[asyncio.Task[RemoteResult]]:
        """One task per chunk, chunk i to urls[(offset + i) % len(urls)]. Never blocks."""
        if self._closed:
            raise ShuttingDown("the server is shutting down")
        if len(texts) > self.max_queue:
            raise InvalidInput(
                f"the request has {len(texts)} chunks; at most {self.max_queue} fit in the queue"
            )
        if len(self._tasks) + len(texts) > self.max_queue:
            if self._metrics:
                self._metrics.rejected.labels("queue_full").inc()
            raise Overloaded(f"the queue is full ({len(self._tasks)} chunks pending)")
        tasks = []
        for i, text in enumerate(texts):
            url = urls[(offset + i) % len(urls)]
            task = asyncio.create_task(self._chunk(i, url, {"text": text}))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            tasks.append(task)
        return tasks

    async def _chunk(self, index: int, url: httpx.URL, payload: Any) -> RemoteResult:
        try:
            answer = await self.post_json(url, payload)
        except UpstreamError as exc:
            return RemoteResult(index, str(url), False, None, exc.message, exc.latency_ms, exc.queue_s)
        return RemoteResult(index, str(url), True, answer.json, None, answer.latency_ms, answer.queue_s)

    # ---- one call --------------------------------------------------------------------------
    async def post_json(self, url: httpx.URL, payload: Any) -> Answer:
        """POST `payload` as JSON within the upstream's limit, retries and time budget."""
        queued = time.perf_counter()
        async with self._slots.hold(str(url)):
            started = time.perf_counter()
            try:
                result = await asyncio.wait_for(
                    self._attempts(url, orjson.dumps(payload), started + self.timeout_s), self.timeout_s
                )
            except UpstreamError as exc:
                failure = exc
            except TimeoutError:
                self._count("timeout")
                failure = UpstreamError(f"the upstream gave no answer within {self.timeout_s:g} s")
            else:
                return Answer(result, (time.perf_counter() - started) * 1000, started - queued)
            failure.latency_ms = (time.perf_counter() - started) * 1000
            failure.queue_s = started - queued
            raise failure

    async def _attempts(self, url: httpx.URL, body: bytes, deadline: float) -> Any:
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                status, data, retry_after = await self._send(url, body)
            except httpx.TransportError as exc:
                self._count("transport_error")
                failure = UpstreamError(f"cannot reach the upstream ({type(exc).__name__})")
                retryable = True
            else:
                if 200 <= status < 300:
                    try:
                        answer = orjson.loads(data)
                    except orjson.JSONDecodeError:
                        self._count("invalid_json")
                        raise UpstreamError("the upstream answered invalid JSON", status=status) from None
                    self._count("ok")
                    return answer
                self._count(f"http_{status // 100}xx" if status != 429 else "http_429")
                note = " (redirects are not followed)" if 300 <= status < 400 else ""
                failure = UpstreamError(f"the upstream answered HTTP {status}{note}", status=status)
                retryable = status == 429 or status >= 500
            if not retryable or attempt > self.retries:
                if attempt > 1:
                    failure.message += f" ({attempt} attempts)"
                raise failure
            delay = retry_after if retry_after is not None else self.backoff_s * 2 ** (attempt - 1)
            if time.perf_counter() + delay > deadline:
                failure.message += f"; retrying after {delay:g} s would exceed the time budget"
                raise failure
            if self._metrics:
                self._metrics.upstream_retries.inc()
            await asyncio.sleep(delay)

    async def _send(self, url: httpx.URL, body: bytes) -> tuple[int, bytes, float | None]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        async with self.client.stream("POST", url, content=body, headers=headers) as response:
            data = bytearray()
            async for piece in response.aiter_bytes():
                data += piece
                if len(data) > MAX_ANSWER_BYTES:
                    self._count("too_large")
                    raise UpstreamError(
                        f"the upstream answer exceeds {MAX_ANSWER_BYTES} bytes", status=response.status_code
                    )
            return response.status_code, bytes(data), parse_retry_after(response.headers.get("retry-after"))

    # ---- bookkeeping -----------------------------------------------------------------------
    def _count(self, outcome: str) -> None:
        if self._metrics:
            self._metrics.upstream_requests.labels(outcome).inc()

    def _count_abandoned(self) -> None:
        if self._metrics:
            self._metrics.cancelled.labels(self.label).inc()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
