"""DynamicBatcher: one queue of chunks from every request -> batches -> model threads -> futures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from models.base import AsyncModel, BatchOutput, Encoded, Model
from server.batching.admission import AdmissionControl, Work
from server.batching.backend import ItemResult
from server.batching.faults import Failure, is_device_failure
from server.batching.selection import select_batch
from server.errors import (
    ConvoyError,
    InferenceFailed,
    InvalidInput,
    ModelUnavailable,
    NonFiniteOutput,
    Overloaded,
    ShuttingDown,
)
from server.metrics import Metrics, multiprocess_enabled

log = logging.getLogger("convoy.batcher")

# Weight of the newest inter-arrival gap in the running estimate of the arrival rate.
_GAP_ALPHA = 0.2
# Weight of the newest batch in the running estimate of characters per token.
_RATIO_ALPHA = 0.1
# Weight of the newest batch in the running times of a forward pass and of tokenising a batch.
_TIMING_ALPHA = 0.2
# The next batch is taken this many tokenising times before the running one should end.
_AHEAD_MARGIN = 2.0
_NON_FINITE = (
    "the model produced a non-finite value (inf or NaN) for this input; with dtype {dtype} this is "
    "usually an overflow: serve the model in float32 or bfloat16"
)


@dataclass(frozen=True, slots=True)
class InputKind:
    """How a request's texts become model inputs: a prompt to prepend (None: the model's default,
    "": none), or the query each text (a document) is paired with for a rerank model."""

    prompt: str | None = None
    query: str | None = None


_PLAIN = InputKind()
# Items tokenised elsewhere (submit_encoded: a front-end process did it; or chunking, which
# tokenised a long text's pieces to count them). Told apart from _PLAIN by identity, as the collate
# step compares kinds; never grouped with texts.
_ENCODED = InputKind()


@dataclass(slots=True, eq=False)
class _Item:
    text: str  # "" when a front-end process sent `encoded` alone
    future: asyncio.Future[ItemResult]
    enqueued: float
    tokens: float  # estimated from characters until the tokenizer has counted; exact when encoded
    kind: InputKind
    encoded: Encoded | None = None  # the model input, when it arrived tokenised
    tag: object = None  # the submitter's mark, handed to `on_batch` (the engine: which front-end)


@dataclass(slots=True)
class _Prepared:
    items: list[_Item]
    encoded: Any = None
    failed: bool = False  # tokenisation raised: the forward step tokenises again, item by item


class DynamicBatcher:
    """Cross-request batching for one model.

    Threads: `submit()` and everything else runs on the event loop; `model.prepare` runs on the
    "convoy-tokenize" thread and `model.forward` on the "convoy-model" thread, so batch N+1 is
    tokenised while batch N computes. Only the collector task takes items off the queue.

    Batching policy: while the model is busy, the queue fills by itself and the next batch is
    taken as soon as it is full or the model frees up; with `prepare_ahead` (an accelerator),
    just before the running batch should end, so the device never waits for the tokenizer.
    When the model is idle and the batch is not full, the collector waits (at most
    `max_wait_ms`) only if recent arrivals say more work is due within that window; a lone
    request never pays the timeout.
    """

    _loop: asyncio.AbstractEventLoop

    def __init__(
        self,
        model: Model | AsyncModel,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_batch_tokens: int | None = None,
        max_queue: int,
        metrics: Metrics | None = None,
        prepare_ahead: bool = True,
    ) -> None:
        self.model = model
        # Decided once: a runtime Protocol check is too slow for every batch.
        self._async_model: AsyncModel | None = model if isinstance(model, AsyncModel) else None
        self._sync_model: Model | None = None if self._async_model else model  # type: ignore[assignment]
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = float(max_batch_tokens) if max_batch_tokens else float("inf")
        # Batches are picked from this many of the oldest waiting items (see select_batch).
        self._window = 4 * max_batch_size
        # Tokens are estimated from characters until batches tell the real ratio.
        self._chars_per_token = 4.0
        self._special_tokens = model.info.special_tokens
        self.max_wait_s = max_wait_ms / 1000.0
        # Taking the next batch before the running one ends only pays where the forward pass
        # leaves the CPU free to tokenise (a GPU). On a CPU the two share the cores, and the
        # early batch is a smaller one: measured on one core, a quarter fewer requests/s.
        self.prepare_ahead = prepare_ahead
        self.max_queue = max_queue
        self._label = model.info.name
        self._metrics = metrics.for_model(self._label) if metrics else None
        self._queue: deque[_Item] = deque()
        # The queue-depth gauge is read when Prometheus scrapes, not written on every submit and
        # take; in multiprocess mode (`--workers N`) only written values reach the other processes.
        self._depth_gauge = None
        if self._metrics and multiprocess_enabled():
            self._depth_gauge = self._metrics.queue_depth
        elif self._metrics:
            self._metrics.queue_depth.set_function(lambda: len(self._queue))
        self._wake = asyncio.Event()
        self._closed = False
        self._failure: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_arrival = 0.0
        self._gap_ewma = float("inf")
        self._arrivals = 0
        self._busy = False
        # Whether waiting for a batch to fill is expected to gather anything. Cleared by a wait
        # that gathered nothing (a lone client), set again by evidence of concurrent clients.
        self._wait_pays = True
        self._compute_started = 0.0  # event-loop time the running batch started
        self._compute_s = 0.0  # running estimate of a batch's compute time (0: none run yet)
        self._prepare_s = 0.0  # running estimate of tokenising and collating a batch
        self._admission = AdmissionControl(
            max_batch_size=max_batch_size, max_batch_tokens=self.max_batch_tokens, metrics=metrics
        )
        # A sticky device error (CUDA): every later forward fails too, so stop until a probe passes.
        self._device_failure: Failure | None = None
        self.unhealthy_since: float | None = None  # time.monotonic() when health was lost
        self._tokenize_pool = ThreadPoolExecutor(1, thread_name_prefix="convoy-tokenize")
        self._model_pool = ThreadPoolExecutor(1, thread_name_prefix="convoy-model")
        # Called on the loop with the tags of each batch taken (the engine counts front-ends per
        # batch); None costs one check per batch.
        self.on_batch: Callable[[list[object]], None] | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name=f"convoy-batcher-{self._label}")
        self._task.add_done_callback(self._on_loop_exit)

    async def stop(self, timeout_s: float | None = None) -> None:
        """Refuse new work, finish what is queued (within `timeout_s`), join the threads."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                log.warning("drain timed out with %d chunks queued; failing them", len(self._queue))
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                self._fail_queued(ShuttingDown("the server stopped before this chunk ran"))
            except Exception:
                pass  # the loop died earlier; _on_loop_exit already logged it and failed its items
        for pool in (self._tokenize_pool, self._model_pool):
            await asyncio.to_thread(pool.shutdown, wait=True)

    @property
    def healthy(self) -> bool:
        """The loop runs and the device has not failed (a failed device: see `probe`)."""
        return (
            self._failure is None
            and self._device_failure is None
            and self._task is not None
            and not self._task.done()
        )

    async def probe(self) -> bool:
        """Check health with a real one-token forward pass when the device failed earlier.

        Runs on the model thread, so never beside a batch. A pass clears the failure (the error
        was transient); a dead collector loop never recovers.
        """
        if self._failure is not None or self._task is None or self._task.done():
            return False
        if self._device_failure is None:
            return True
        model = self._sync_model
        if model is not None:
            try:
                await self._loop.run_in_executor(self._model_pool, self._probe_forward, model)
            except Exception as exc:
                log.error("health probe: the device still fails (%s: %s)", type(exc).__name__, exc)
                return False
        log.warning("health probe passed: the device serves again")
        self._device_failure = None
        self.unhealthy_since = None
        return True

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def estimate_s(self, texts: Sequence[str]) -> float | None:
        """Seconds of compute these texts should take on an idle model; None until batches tell."""
        if not self._admission.cost.trusted:
            return None
        return self._admission.estimate_s(Work(len(texts), sum(self._token_estimates(texts, _PLAIN))))

    def _token_estimates(self, texts: Sequence[str], kind: InputKind) -> list[float]:
        # Tokens are estimated from characters, at the ratio the batches so far have shown; a
        # prompt or a paired query adds its own.
        ratio = self._chars_per_token
        extra = self._special_tokens + (len(kind.prompt or "") + len(kind.query or "")) / ratio
        return [len(t) / ratio + extra for t in texts]

    # ---- the one way in --------------------------------------------------------------------
    def submit(
        self,
        texts: Sequence[str],
        *,
        deadline_s: float | None = None,
        prompt: str | None = None,
        query: str | None = None,
        encoded: Sequence[Encoded | None] | None = None,
    ) -> list[asyncio.Future[ItemResult]]:
        """Queue one request's chunks; returns one future per chunk, in order. Never blocks.

        With `deadline_s`, a request that the queue ahead of it would make miss its deadline is
        refused now (503) rather than accepted and timed out later (504); one that could not
        meet it even on an idle model gets 504 at once. `encoded[i]`, when set, is text i's
        model input, already tokenised (chunking did it): the batch does not tokenise it again.
        """
        kind = _PLAIN if prompt is None and query is None else InputKind(prompt, query)
        tokens = self._token_estimates(texts, kind)
        if encoded is None or self._async_model is not None:
            return self._enqueue(texts, tokens, kind, deadline_s)
        for i, enc in enumerate(encoded):
            if enc is not None:
                tokens[i] = float(len(enc.ids))
        return self._enqueue(texts, tokens, kind, deadline_s, encoded=encoded)

    def submit_encoded(
        self, encoded: Sequence[Encoded], *, deadline_s: float | None = None, tag: object = None
    ) -> list[asyncio.Future[ItemResult]]:
        """Queue one request's chunks tokenised elsewhere (a front-end process, `--workers N`).

        As `submit`, but the items skip the tokenise step and count their exact tokens for batch
        selection and admission. `tag` marks the items for `on_batch`.
        """
        if self._async_model is not None:  # an upstream takes texts, not token ids
            raise InvalidInput(f"model {self._label!r} takes texts only")
        tokens = [float(len(e.ids)) for e in encoded]
        return self._enqueue(encoded, tokens, _ENCODED, deadline_s, tag)

    def _enqueue(
        self,
        texts: Sequence[str] | Sequence[Encoded],
        tokens: list[float],
        kind: InputKind,
        deadline_s: float | None,
        tag: object = None,
        *,
        encoded: Sequence[Encoded | None] | None = None,
    ) -> list[asyncio.Future[ItemResult]]:
        if self._failure is not None:
            raise ModelUnavailable("the model can no longer serve; see the server log")
        if self._device_failure is not None:
            raise ModelUnavailable(
                f"the device failed ({self._device_failure.describe()}); the server must be restarted"
            )
        if self._closed:
            if self._metrics:
                self._metrics.rejected.labels("shutting_down").inc()
            raise ShuttingDown("the server is shutting down")
        if len(texts) > self.max_queue:
            raise InvalidInput(
                f"the request has {len(texts)} chunks; at most {self.max_queue} fit in the queue"
            )
        if len(self._queue) + len(texts) > self.max_queue:
            if self._metrics:
                self._metrics.rejected.labels("queue_full").inc()
            raise Overloaded(f"the queue is full ({len(self._queue)} chunks waiting)")
        request_tokens = sum(tokens)
        self._admission.check(Work(len(texts), request_tokens), deadline_s, busy=self._busy)

        now = time.perf_counter()
        if self._last_arrival:
            gap = now - self._last_arrival
            self._gap_ewma = (
                gap
                if self._gap_ewma == float("inf")
                else _GAP_ALPHA * gap + (1 - _GAP_ALPHA) * self._gap_ewma
            )
        self._last_arrival = now
        self._arrivals += 1
        if self._busy or self._queue:
            self._wait_pays = True  # someone else's work is pending: clients overlap

        loop = self._loop
        futures: list[asyncio.Future[ItemResult]] = []
        if kind is _ENCODED:
            for enc, n in zip(cast("Sequence[Encoded]", texts), tokens, strict=True):
                fut: asyncio.Future[ItemResult] = loop.create_future()
                self._queue.append(_Item("", fut, now, n, kind, enc, tag))
                futures.append(fut)
        elif encoded is None:
            for text, n in zip(cast("Sequence[str]", texts), tokens, strict=True):
                fut = loop.create_future()
                self._queue.append(_Item(text, fut, now, n, kind))
                futures.append(fut)
        else:
            for text, n, given in zip(cast("Sequence[str]", texts), tokens, encoded, strict=True):
                fut = loop.create_future()
                # A tokenised text keeps its text: batches are still ordered by length.
                self._queue.append(_Item(text, fut, now, n, kind if given is None else _ENCODED, given))
                futures.append(fut)
        self._admission.enqueue(request_tokens, len(texts))
        if self._depth_gauge is not None:
            self._depth_gauge.set(len(self._queue))
        self._wake.set()
        return futures

    # ---- the collector ---------------------------------------------------------------------
    async def _run(self) -> None:
        inflight: asyncio.Task[None] | None = None
        while True:
            items = await self._next_batch(inflight)
            if items is None:
                break
            prepared = await self._prepare(items)
            if inflight is not None:
                await inflight
            inflight = asyncio.create_task(self._compute(prepared))
            self._busy = True
            self._compute_started = self._loop.time()
            inflight.add_done_callback(self._on_compute_done)
        if inflight is not None:
            await inflight

    async def _next_batch(self, inflight: asyncio.Task[None] | None) -> list[_Item] | None:
        waited = False
        while True:
            self._wake.clear()
            busy = inflight is not None and not inflight.done()
            queued = len(self._queue)
            if queued >= self.max_batch_size:
                return self._take()
            if queued and not busy:
                if not waited and not self._closed and self._worth_waiting():
                    waited = True
                    arrivals = self._arrivals
                    await self._wait_for_fill()
                    self._wait_pays = self._arrivals > arrivals
                    continue
                return self._take()
            if not queued and self._closed:
                return None
            ahead_at = self._prepare_ahead_at() if queued else None
            if ahead_at is None:
                await self._wake.wait()
                continue
            # Take the next batch just before the running one should end, so it is tokenised
            # beside it and the model never waits for the tokenizer (on a GPU a forward pass
            # takes a few ms, tokenising a batch about as long).
            delay = ahead_at - self._loop.time()
            if delay <= 0:
                return self._take()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    def _prepare_ahead_at(self) -> float | None:
        """When to take the next batch while the model is busy; None: wait until it is free (or a
        batch fills), as when there is no history yet or the running batch is overdue (held)."""
        if self._compute_s <= 0 or not self.prepare_ahead:
            return None
        end = self._compute_started + self._compute_s
        if self._loop.time() > end:
            return None
        return end - _AHEAD_MARGIN * self._prepare_s

    def _worth_waiting(self) -> bool:
        # Expect at least two more arrivals inside the window; otherwise waiting only adds latency.
        return self.max_wait_s > 0 and self._wait_pays and self._gap_ewma * 2 < self.max_wait_s

    async def _wait_for_fill(self) -> None:
        deadline = self._loop.time() + self.max_wait_s
        while len(self._queue) < self.max_batch_size:
            # Give up early once arrivals stop coming at the rate that justified waiting.
            remaining = min(deadline - self._loop.time(), 2 * self._gap_ewma)
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Item]:
        window: list[_Item] = []
        skipped = 0
        while self._queue and len(window) < self._window:
            item = self._queue.popleft()
            self._admission.dequeue(item.tokens)
            if item.future.done():  # cancelled: client gone or deadline passed
                skipped += 1
            else:
                window.append(item)
        if skipped and self._metrics:
            self._metrics.cancelled.inc(skipped)
        # The oldest item plus those nearest it in length: similar lengths waste little padding.
        chosen = select_batch(
            [it.tokens for it in window],
            self.max_batch_size,
            self.max_batch_tokens,
        )
        items = [window[i] for i in chosen]
        if len(items) < len(window):
            picked = set(chosen)
            left = [it for i, it in enumerate(window) if i not in picked]
            self._queue.extendleft(reversed(left))
            self._admission.enqueue(sum(it.tokens for it in left), len(left))
        if self._depth_gauge is not None:
            self._depth_gauge.set(len(self._queue))
        items.sort(key=lambda it: len(it.text))
        if self.on_batch is not None:
            self.on_batch([it.tag for it in items])
        return items

    async def _prepare(self, items: list[_Item]) -> _Prepared:
        prepared = _Prepared(items)
        if not items or self._sync_model is None:
            return prepared
        started = self._loop.time()
        try:
            prepared.encoded = await self._loop.run_in_executor(self._tokenize_pool, self._collate, items)
        except Exception:
            prepared.failed = True  # retried (and isolated) in the forward step
        self._prepare_s += _TIMING_ALPHA * (self._loop.time() - started - self._prepare_s)
        return prepared

    async def _compute(self, prepared: _Prepared) -> None:
        """Run one batch and resolve its futures. Never raises: errors land on futures."""
        items = [it for it in prepared.items if not it.future.done()]
        if len(items) < len(prepared.items) and self._metrics:
            self._metrics.cancelled.inc(len(prepared.items) - len(items))
        if len(items) < len(prepared.items) or prepared.failed:
            prepared.encoded = None  # re-tokenise the survivors (or retry a failed tokenisation)
        if items:
            prepared.items = items
            await self._compute_items(prepared)

    async def _compute_items(self, prepared: _Prepared) -> None:
        # The tensors move from `prepared` into this frame alone, so that dropping them here
        # (on failure, before the retries) frees them: no caller keeps a reference.
        items, encoded, prepared.encoded = prepared.items, prepared.encoded, None
        started = time.perf_counter()
        failure: Failure | None = None
        try:
            if self._async_model is not None:
                output = await self._async_model.forward_async([it.text for it in items])
            else:
                output = await self._loop.run_in_executor(self._model_pool, self._forward, items, encoded)
            if len(output.vectors) != len(items) or len(output.tokens) != len(items):
                raise RuntimeError(f"model returned {len(output.vectors)} rows for a batch of {len(items)}")
        except ConvoyError as exc:
            # Already a client-facing error about the whole batch (e.g. a remote upstream is
            # down): bisecting would only repeat the failing call, so every item gets it as is.
            self._fail_items(items, exc)
            return
        except Exception as exc:
            # Keep the type and message only: the exception's traceback holds the failed
            # forward's frames, and with them its inputs and activations (PyTorch FAQ, "My out
            # of memory exception handler can't allocate memory"). Leaving the except block
            # drops them before the retries allocate again.
            failure = Failure.of(exc)
            device_failed = is_device_failure(exc)
        if failure is not None:
            del encoded  # the failed batch's tensors go too
            if device_failed:
                self._on_device_failure(items, failure)
            else:
                await self._isolate(items, failure)
            return
        elapsed = time.perf_counter() - started
        tokens = output.tokens
        real_tokens = int(tokens.sum())
        text_tokens = real_tokens - self._special_tokens * len(items)
        # Characters per token are learnt from batches tokenised here, with their prompts in view.
        if text_tokens > 0 and all(it.encoded is None for it in items):
            chars = sum(len(it.text) + len(it.kind.prompt or "") + len(it.kind.query or "") for it in items)
            ratio = chars / text_tokens
            self._chars_per_token += _RATIO_ALPHA * (ratio - self._chars_per_token)
        self._admission.observe_batch(
            items=len(items), real_tokens=real_tokens, longest=int(tokens.max()), seconds=elapsed
        )
        if self._metrics:
            self._metrics.batch_size.observe(len(items))
            self._metrics.inference_seconds.observe(elapsed)
        vectors, norms, raw = output.vectors, output.norms, output.raw
        # A non-finite row (float16 overflow, a broken head) would be written as JSON `null`
        # inside a 200: fail only the items it belongs to. One vectorised check per batch.
        finite: npt.NDArray[np.bool_] | None = None
        if not np.isfinite(vectors).all():
            finite = np.asarray(np.isfinite(vectors).all(axis=1))
        ok = 0
        for i, item in enumerate(items):
            if item.future.done():
                continue
            if finite is not None and not finite[i]:
                log.warning("the model produced a non-finite row (dtype %s)", self.model.info.dtype)
                item.future.set_exception(NonFiniteOutput(_NON_FINITE.format(dtype=self.model.info.dtype)))
                continue
            ok += 1
            item.future.set_result(
                ItemResult(
                    vector=vectors[i],
                    tokens=int(tokens[i]),
                    queue_s=started - item.enqueued,
                    inference_s=elapsed,
                    norm=1.0 if norms is None else float(norms[i]),
                    raw=None if raw is None else raw[i],
                )
            )
        if self._metrics:
            self._metrics.chunks_ok.inc(ok)
            if ok < len(items):
                self._metrics.chunks_error.inc(len(items) - ok)

    def _collate(self, items: Sequence[_Item]) -> Any:
        """Tokenise a batch, request kind by kind (usually one), and pad it on the device."""
        model = self._sync_model
        assert model is not None  # only called for a sync Model
        first = items[0].kind
        if all(it.kind is first for it in items):  # one kind: one tokenizer call
            if first is _ENCODED:
                return model.collate([it.encoded for it in items])  # type: ignore[misc]
            return model.collate(self._encode(model, first, [it.text for it in items]))
        encoded: list[Encoded] = [None] * len(items)  # type: ignore[list-item]  # all filled below
        groups: dict[InputKind, list[int]] = {}
        for i, it in enumerate(items):
            if it.encoded is not None:
                encoded[i] = it.encoded
            else:
                groups.setdefault(it.kind, []).append(i)
        for kind, where in groups.items():
            for i, enc in zip(where, self._encode(model, kind, [items[i].text for i in where]), strict=True):
                encoded[i] = enc
        return model.collate(encoded)

    @staticmethod
    def _encode(model: Model, kind: InputKind, texts: list[str]) -> list[Encoded]:
        if kind.query is not None:
            return model.encode_pairs(kind.query, texts, prompt=kind.prompt)
        return model.encode(texts, prompt=kind.prompt)

    def _forward(self, items: list[_Item], encoded: Any) -> BatchOutput:
        model = self._sync_model
        assert model is not None  # only called for a sync Model
        if encoded is None:
            encoded = self._collate(items)
        return model.forward(encoded)

    @staticmethod
    def _probe_forward(model: Model) -> None:
        model.forward(model.collate(model.encode(["ok"])))

    async def _isolate(self, items: list[_Item], failure: Failure) -> None:
        # Bisect: the halves without the culprit succeed; only the culprit's future fails.
        # This also turns an out-of-memory error on a big batch into smaller batches.
        if len(items) == 1:
            log.warning("model failed on one input: %s", failure.describe())
            self._fail_items(items, InferenceFailed(f"the model failed on this input ({failure.type_name})"))
            return
        mid = len(items) // 2
        for half in (items[:mid], items[mid:]):
            alive = [it for it in half if not it.future.done()]
            if alive:
                await self._compute_items(_Prepared(alive))

    def _on_device_failure(self, items: list[_Item], failure: Failure) -> None:
        # Not the input's fault, and not recoverable by retrying on the same device: every item
        # of the batch (and everything queued behind it) fails with 503, health turns false
        # until a probe passes, and `convoy serve` exits after --unhealthy-exit-s.
        log.error("the device failed; the model is unhealthy until a probe passes: %s", failure.describe())
        self._device_failure = failure
        if self.unhealthy_since is None:
            self.unhealthy_since = time.monotonic()
        error = ModelUnavailable(f"the device failed ({failure.describe()}); the server must be restarted")
        self._fail_items(items, error)
        self._fail_queued(error)

    def _fail_items(self, items: list[_Item], exc: Exception) -> None:
        if self._metrics:
            self._metrics.chunks_error.inc(len(items))
        for item in items:
            if not item.future.done():
                item.future.set_exception(exc)

    def _on_compute_done(self, _: asyncio.Task[None]) -> None:
        self._busy = False
        elapsed = self._loop.time() - self._compute_started
        self._compute_s = (
            elapsed if self._compute_s <= 0 else self._compute_s + _TIMING_ALPHA * (elapsed - self._compute_s)
        )
        self._wake.set()

    # ---- failure and bookkeeping -----------------------------------------------------------
    def _on_loop_exit(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._failure = exc
            self.unhealthy_since = time.monotonic()
            log.error("the batcher loop died; failing every queued chunk", exc_info=exc)
            self._fail_queued(ModelUnavailable("the model can no longer serve"))

    def _fail_queued(self, exc: Exception) -> None:
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(exc)
        self._admission.clear()
        if self._depth_gauge is not None:
            self._depth_gauge.set(0)
