"""EngineBackend: a front-end process's Backend, tokenising here and computing in the engine process.

With `--workers N`, every front-end holds one EngineClient: its connection to the engine
(server/batching/engine.py, over server/batching/wire.py). Each served model is an EngineBackend
over it, so routes run unchanged: chunks are tokenised here with the model's own tokenizer (no
weights), sent as token ids, batched in the engine with every other front-end's, and answered
on the futures routes await. Cancelling a future (deadline, client gone) cancels the chunk in
the engine, which drops it unrun.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, cast

from models.base import Encoded, ModelInfo, TokenSpan
from server.batching import wire
from server.batching.backend import ItemResult
from server.errors import ConvoyError, InferenceFailed, ModelUnavailable, ShuttingDown

log = logging.getLogger("convoy.engine")

# Texts of one loop tick up to this many characters are tokenised on the loop (about a
# millisecond); more goes to the encode thread, so a huge request never stalls the loop.
INLINE_CHARS = 32_768

ENGINE_GONE = "the engine process is gone; the server must be restarted"
MODEL_UNHEALTHY = "the model can no longer serve; see the server log"


class Tokenizer(Protocol):
    """A model's tokenisation without its network (models/tokenization.py's InputEncoder).

    Thread-safe: the encode thread and chunking's worker threads call it too.
    """

    def encode(
        self, texts: Sequence[str], *, prompt: str | None = None, truncate: bool = True
    ) -> list[Encoded]: ...

    def encode_pairs(
        self, query: str, documents: Sequence[str], *, prompt: str | None = None, truncate: bool = True
    ) -> list[Encoded]: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def prompt_tokens(self, prompt: str) -> int: ...

    def tokenize(
        self, texts: Sequence[str], *, add_special_tokens: bool = True, prompt: str | None = None
    ) -> list[list[TokenSpan]]: ...

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]: ...


@dataclass(slots=True)
class _Request:
    """One submit() waiting for its tick's flush: tokenised there, then sent."""

    model: int
    tokenizer: Tokenizer
    texts: Sequence[str]
    prompt: str | None
    query: str | None
    first: int  # item id of texts[0]; the others follow
    deadline_s: float | None
    submitted: float  # loop time
    # Every text's inputs, when chunking already tokenised them all: sent as they are.
    encoded: list[Encoded] | None = None


class EngineClient(wire.Peer):
    """One front-end's connection to the engine. Event loop only, except tokenising large ticks.

    `submit` registers futures and queues the texts; one flush per loop tick tokenises them and
    sends one WORK message (with that tick's cancellations). Answers resolve the futures; if the
    engine goes away, every pending future fails with 503 (`model_unavailable`).
    """

    def __init__(self) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._welcome: asyncio.Future[None] = self._loop.create_future()
        self.infos: list[ModelInfo] = []
        self.health: list[bool] = []
        self.engine_pid = 0
        self.lost: ModelUnavailable | None = None
        # item id -> (its future, loop time of its submit)
        self._pending: dict[int, tuple[asyncio.Future[ItemResult], float]] = {}
        self._next_item = 0
        self._queued: list[_Request] = []
        self._queued_chars = 0
        self._cancelled: list[int] = []
        self._probes: dict[int, asyncio.Future[bool]] = {}
        self._next_probe = 0
        self._users = 0
        self._encode_pool: ThreadPoolExecutor | None = None

    @classmethod
    async def connect(cls, path: str, frontend: int) -> EngineClient:
        """Connect to the engine listening at `path`, say who this is, and read what it serves.

        Waits while the engine loads its models; raises ModelUnavailable if it dies meanwhile.
        """
        loop = asyncio.get_running_loop()
        client = cls()
        try:
            await loop.create_unix_connection(lambda: client, path)
        except OSError as exc:
            raise ModelUnavailable(f"cannot reach the engine at {path}: {exc.strerror or exc}") from None
        client.send([wire.HELLO, frontend])
        await client._welcome
        return client

    # ---- the connection --------------------------------------------------------------------------
    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._users == 0 and self._welcome.done():
            return  # closed on purpose
        lost = self.lost = ModelUnavailable(ENGINE_GONE)
        log.error("the engine closed its connection: failing %d pending chunks", len(self._pending))
        self.health = [False] * len(self.health)
        if not self._welcome.done():
            self._welcome.set_exception(lost)
        pending, self._pending = self._pending, {}
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(lost)
        probes, self._probes = self._probes, {}
        for probe in probes.values():
            if not probe.done():
                probe.set_result(False)

    def received(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == wire.RESULTS:
            self._answers(message)
        elif kind == wire.HEALTH:
            self.health = list(message[1])
        elif kind == wire.PROBED:
            probe = self._probes.pop(message[1], None)
            if probe is not None and not probe.done():
                probe.set_result(bool(message[2]))
        elif kind == wire.WELCOME:
            self.engine_pid = int(message[1])
            self.infos = [wire.read_info(fields) for fields in message[2]]
            self.health = list(message[3])
            if not self._welcome.done():
                self._welcome.set_result(None)

    def attach(self) -> None:
        """One more backend uses this connection (released by `release`)."""
        self._users += 1

    def release(self) -> None:
        """A backend is done; the last one closes the connection (the engine then forgets us)."""
        self._users -= 1
        if self._users <= 0:
            self.close()

    def close(self) -> None:
        """Close the connection; whatever is still pending fails (nobody waits for it any more)."""
        self._users = 0
        self._fail(list(self._pending), ShuttingDown("the server stopped before this chunk ran"))
        super().close()
        if self._encode_pool is not None:
            self._encode_pool.shutdown(wait=False)

    # ---- submit -> WORK ------------------------------------------------------------------------------
    def submit(
        self,
        model: int,
        tokenizer: Tokenizer,
        texts: Sequence[str],
        *,
        deadline_s: float | None,
        prompt: str | None,
        query: str | None,
        encoded: list[Encoded] | None = None,
    ) -> list[asyncio.Future[ItemResult]]:
        if self.lost is not None:
            raise self.lost
        if not self.health[model]:
            raise ModelUnavailable(MODEL_UNHEALTHY)
        loop = self._loop
        now = loop.time()
        first = self._next_item
        self._next_item += len(texts)
        pending = self._pending
        forget = self._forget
        futures: list[asyncio.Future[ItemResult]] = []
        for item in range(first, first + len(texts)):
            fut: asyncio.Future[ItemResult] = loop.create_future()
            fut.add_done_callback(functools.partial(forget, item))
            pending[item] = (fut, now)
            futures.append(fut)
        self._queued.append(_Request(model, tokenizer, texts, prompt, query, first, deadline_s, now, encoded))
        if encoded is None:
            self._queued_chars += sum(map(len, texts))
        self.schedule_flush()
        return futures

    def _forget(self, item: int, fut: asyncio.Future[ItemResult]) -> None:
        # Runs for every future; only a cancelled one (deadline, client gone) has work to do.
        if fut.cancelled() and self._pending.pop(item, None) is not None:
            self._cancelled.append(item)
            self.schedule_flush()

    def flush(self) -> None:
        requests, self._queued = self._queued, []
        chars, self._queued_chars = self._queued_chars, 0
        cancelled, self._cancelled = self._cancelled, []
        if chars <= INLINE_CHARS:
            self._send_work(requests, tokenize_requests(requests), cancelled)
            return
        self._send_work([], [], cancelled)
        if self._encode_pool is None:
            self._encode_pool = ThreadPoolExecutor(1, thread_name_prefix="convoy-encode")
        encoding = self._loop.run_in_executor(self._encode_pool, tokenize_requests, requests)
        encoding.add_done_callback(functools.partial(self._encoded, requests))

    def _encoded(
        self, requests: list[_Request], encoding: asyncio.Future[list[list[Encoded] | Exception]]
    ) -> None:
        if encoding.cancelled():
            return
        self._send_work(requests, encoding.result(), [])

    def _send_work(
        self, requests: list[_Request], encoded: list[list[Encoded] | Exception], cancelled: list[int]
    ) -> None:
        now = self._loop.time()
        pending = self._pending
        submissions = []
        for request, inputs in zip(requests, encoded, strict=True):
            items = range(request.first, request.first + len(request.texts))
            if isinstance(inputs, Exception):
                self._fail(
                    items, InferenceFailed(f"the tokenizer failed on this input ({type(inputs).__name__})")
                )
                continue
            # Chunks cancelled before they were sent are never sent.
            live = [(item, enc) for item, enc in zip(items, inputs, strict=True) if item in pending]
            if not live:
                continue
            deadline_s = None
            if request.deadline_s is not None:
                deadline_s = max(request.deadline_s - (now - request.submitted), 1e-3)
            submissions.append(
                wire.pack_submission(request.model, [i for i, _ in live], [e for _, e in live], deadline_s)
            )
        if submissions or cancelled:
            self.send([wire.WORK, submissions, cancelled])

    # ---- RESULTS -> futures -------------------------------------------------------------------------
    def _answers(self, message: list[Any]) -> None:
        now = self._loop.time()
        pending = self._pending
        for group in wire.read_groups(message):
            rows, raw, norms, tokens, inference_s = (
                group.rows,
                group.raw,
                group.norms,
                group.tokens,
                group.inference_s,
            )
            for i, item in enumerate(group.items):
                entry = pending.pop(item, None)
                if entry is None:
                    continue  # cancelled here after the engine had computed it
                fut, submitted = entry
                if fut.done():
                    continue
                seconds = inference_s[i]
                fut.set_result(
                    ItemResult(
                        vector=rows[i],
                        tokens=tokens[i],
                        # Everything but the forward pass: tokenising, both hops, the engine's queue.
                        queue_s=max(now - submitted - seconds, 0.0),
                        inference_s=seconds,
                        norm=1.0 if norms is None else norms[i],
                        raw=None if raw is None else raw[i],
                    )
                )
        for error in message[2]:
            item, exc = wire.read_error(error)
            self._fail((item,), exc)

    def _fail(self, items: Sequence[int] | range, exc: ConvoyError) -> None:
        for item in items:
            entry = self._pending.pop(item, None)
            if entry is not None and not entry[0].done():
                entry[0].set_exception(exc)

    # ---- health ---------------------------------------------------------------------------------------
    async def probe(self, model: int) -> bool:
        """A real one-token forward pass in the engine (after a device failure); True if it serves."""
        if self.lost is not None:
            return False
        probe_id = self._next_probe
        self._next_probe += 1
        answer: asyncio.Future[bool] = self._loop.create_future()
        self._probes[probe_id] = answer
        self.send([wire.PROBE, probe_id, model])
        return await answer

    @property
    def pending(self) -> int:
        """Chunks submitted here and not answered yet."""
        return len(self._pending)


def tokenize_requests(requests: Sequence[_Request]) -> list[list[Encoded] | Exception]:
    """Each request's texts -> Encoded inputs: one tokenizer call per (model, prompt, query).

    A failing call is retried request by request, so only the request at fault fails.
    """
    out: list[list[Encoded] | Exception] = [[] for _ in requests]
    groups: dict[tuple[int, str | None, str | None], list[int]] = {}
    for i, request in enumerate(requests):
        if request.encoded is not None:
            out[i] = request.encoded
        else:
            groups.setdefault((request.model, request.prompt, request.query), []).append(i)
    for where in groups.values():
        try:
            encoded = _tokenize([requests[i] for i in where])
        except Exception:
            for i in where:
                try:
                    out[i] = _tokenize([requests[i]])
                except Exception as exc:
                    out[i] = exc
            continue
        start = 0
        for i in where:
            end = start + len(requests[i].texts)
            out[i] = encoded[start:end]
            start = end
    return out


def _tokenize(requests: Sequence[_Request]) -> list[Encoded]:
    first = requests[0]
    texts = first.texts if len(requests) == 1 else [t for r in requests for t in r.texts]
    if first.query is not None:
        return first.tokenizer.encode_pairs(first.query, texts, prompt=first.prompt)
    return first.tokenizer.encode(texts, prompt=first.prompt)


class EngineBackend:
    """One served model, as a front-end sees it: the Backend routes use (server/batching/backend.py).

    Tokenisation, token counts, /tokenize and token-id decoding happen here with the model's own
    tokenizer; forward passes happen in the engine. ModelInfo is the engine's (its handshake).
    """

    def __init__(self, client: EngineClient, model: int, tokenizer: Tokenizer) -> None:
        self._client = client
        self._model = model
        self._tokenizer = tokenizer
        client.attach()

    @property
    def info(self) -> ModelInfo:
        return self._client.infos[self._model]

    @property
    def healthy(self) -> bool:
        return self._client.lost is None and self._client.health[self._model]

    async def probe(self) -> bool:
        return await self._client.probe(self._model)

    def submit(
        self,
        texts: Sequence[str],
        *,
        deadline_s: float | None = None,
        prompt: str | None = None,
        query: str | None = None,
        encoded: Sequence[Encoded | None] | None = None,
    ) -> list[asyncio.Future[ItemResult]]:
        # Chunking's inputs are sent as they are when it made them all (a long text's chunks
        # usually); otherwise the request is tokenised whole, as one group, at the flush.
        given = None
        if encoded is not None and all(e is not None for e in encoded):
            given = cast("list[Encoded]", list(encoded))
        return self._client.submit(
            self._model,
            self._tokenizer,
            texts,
            deadline_s=deadline_s,
            prompt=prompt,
            query=query,
            encoded=given,
        )

    @property
    def tokenizes_here(self) -> bool:
        return True

    def encode_inputs(self, texts: Sequence[str], *, prompt: str | None) -> list[Encoded]:
        """Untruncated model inputs (server/batching/backend.py LocalTokenizer); any thread."""
        return self._tokenizer.encode(texts, prompt=prompt, truncate=False)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._tokenizer.count_tokens(texts)

    def prompt_tokens(self, prompt: str | None) -> int:
        effective = self.info.default_prompt if prompt is None else prompt
        return self._tokenizer.prompt_tokens(effective) if effective else 0

    def tokenize(
        self, texts: Sequence[str], *, add_special_tokens: bool, prompt: str | None
    ) -> list[list[TokenSpan]]:
        return self._tokenizer.tokenize(texts, add_special_tokens=add_special_tokens, prompt=prompt)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return self._tokenizer.decode(ids)

    async def start(self) -> None:
        pass  # the connection is open and the engine has said hello

    async def stop(self, timeout_s: float | None = None) -> None:
        # The server drained before its backends stop: what is still pending nobody waits for.
        self._client.release()


async def engine_backends(path: str, frontend: int, tokenizers: Sequence[Tokenizer]) -> list[EngineBackend]:
    """Connect front-end `frontend` to the engine at `path`: one backend per model it serves,
    each with its tokenizer (in the engine's order: that of served_models())."""
    client = await EngineClient.connect(path, frontend)
    if len(client.infos) != len(tokenizers):
        client.close()
        raise ModelUnavailable(
            f"the engine serves {len(client.infos)} models, this front-end expects {len(tokenizers)}"
        )
    return [EngineBackend(client, i, tokenizer) for i, tokenizer in enumerate(tokenizers)]
