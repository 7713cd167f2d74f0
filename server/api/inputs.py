"""Request inputs and the one request step: limits -> chunks -> submit with a deadline -> await.

Every inference route goes through `submit()` here, so none can forget the request's deadline
(X-Request-Timeout, or CONVOY_REQUEST_TIMEOUT_S) or its client's disconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.requests import Request

from models.base import Encoded
from server.api.cancellation import cancel_all, run_cancellable
from server.batching.backend import Backend, BackendInfo, ItemResult, LocalTokenizer, gather_results
from server.chunking import Chunk, split_text
from server.config import Settings
from server.errors import InvalidInput, LimitExceeded, UnknownPrompt


# ---- per-request limits (checked before any work is queued) -------------------------------------
def check_chars(settings: Settings, chars: int, *, param: str) -> None:
    _check(chars, settings.max_request_chars, "characters of text", "max_request_chars", param)


def check_chunks(settings: Settings, chunks: int, *, param: str | None = None) -> None:
    _check(chunks, settings.max_request_chunks, "chunks", "max_request_chunks", param)


def check_inputs(settings: Settings, inputs: int, *, param: str) -> None:
    _check(inputs, settings.max_embedding_inputs, "inputs", "max_embedding_inputs", param)


def _check(count: int, limit: int, what: str, setting: str, param: str | None) -> None:
    if count > limit:
        raise LimitExceeded(
            f"the request has {count} {what}; at most {limit} are accepted ({setting})", param=param
        )


# ---- what a route takes -------------------------------------------------------------------------
def refuse_rerank(info: BackendInfo, route: str) -> None:
    """A reranker scores (query, document) pairs: a lone text has no score to give."""
    if info.task == "rerank":
        raise InvalidInput(
            f"model {info.name!r} is a rerank model; {route} takes one text per input: use /rerank "
            "or /v1/rerank",
            param="model",
        )


# ---- prompts -----------------------------------------------------------------------------------
def resolve_prompt(info: BackendInfo, prompt_name: str | None) -> str | None:
    """The text of the prompt a request names; None (no name) lets the model's default apply."""
    if prompt_name is None:
        return None
    for name, text in info.prompts:
        if name == prompt_name:
            return text
    names = ", ".join(repr(n) for n, _ in info.prompts) or "none"
    raise UnknownPrompt(
        f"model {info.name!r} has no prompt named {prompt_name!r}; its prompts: {names}", param="prompt_name"
    )


# ---- chunking ----------------------------------------------------------------------------------
@dataclass(slots=True)
class ModelChunks:
    """A text's chunks for one model, and the model inputs chunking already made for them.

    `encoded[i]` is chunk i's tokens when its length had to be counted (a piece that could exceed
    the token window): counting and the model then share one tokenizer call. None: no chunk was
    counted with a backend that tokenises here, and the batch tokenises them all.
    """

    chunks: list[Chunk]
    encoded: list[Encoded | None] | None = None

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.chunks]


class CountingEncoder:
    """A token counter that tokenises texts as the model's inputs and keeps those that fit its
    window: what the batch would have made of them, as nothing there is truncated. Counting (for
    chunking, or a length check) and the model then share one tokenizer call per text."""

    def __init__(self, backend: LocalTokenizer, prompt: str | None, overhead: int, window: int) -> None:
        self._backend = backend
        self._prompt = prompt
        self._overhead = overhead  # special tokens and prompt: not the text's own
        self._window = window
        self._kept: dict[str, Encoded] = {}

    @classmethod
    def of(cls, backend: Backend, prompt: str | None) -> CountingEncoder | None:
        """One for `backend` when its model tokenises in this process, else None (count only)."""
        if not (isinstance(backend, LocalTokenizer) and backend.tokenizes_here):
            return None
        info = backend.info
        return cls(backend, prompt, info.special_tokens + backend.prompt_tokens(prompt), info.max_tokens)

    def __call__(self, texts: Sequence[str]) -> list[int]:
        """The texts' own token counts (as `Backend.count_tokens`)."""
        inputs = self._backend.encode_inputs(texts, prompt=self._prompt)
        for text, enc in zip(texts, inputs, strict=True):
            if len(enc.ids) <= self._window:
                self._kept[text] = enc
        return [len(enc.ids) - self._overhead for enc in inputs]

    def inputs_for(self, texts: Sequence[str]) -> list[Encoded | None] | None:
        """Each text's kept inputs (None where it was not counted); None when none were kept."""
        if not self._kept:
            return None
        return [self._kept.get(t) for t in texts]


async def chunk_text(
    text: str,
    chunk_size: int,
    settings: Settings,
    backend: Backend | None = None,
    *,
    prompt: str | None = None,
    room: int | None = None,
    what: str = "predict on",
    param: str = "text",
) -> list[Chunk]:
    """Split `text` within the request limits; with a backend, also within its model's token window
    (what the special tokens and the prompt leave of it, or `room` tokens when the caller knows
    better: offsets stay in the caller's own text).

    The tokenizer is consulted (off the event loop) only when a chunk could exceed the window.
    """
    chunks, _ = await _chunk(text, chunk_size, settings, backend, prompt, room, what, param, keep=False)
    return chunks


async def chunk_for_model(
    text: str, chunk_size: int, settings: Settings, backend: Backend, *, prompt: str | None = None
) -> ModelChunks:
    """`chunk_text` for a backend's own inputs: the chunks, with the tokens counting made of them."""
    chunks, encoded = await _chunk(
        text, chunk_size, settings, backend, prompt, None, "predict on", "text", keep=True
    )
    return ModelChunks(chunks, encoded)


async def _chunk(
    text: str,
    chunk_size: int,
    settings: Settings,
    backend: Backend | None,
    prompt: str | None,
    room: int | None,
    what: str,
    param: str,
    *,
    keep: bool,
) -> tuple[list[Chunk], list[Encoded | None] | None]:
    check_chars(settings, len(text), param=param)
    max_tokens = room
    if max_tokens is None and backend is not None:
        max_tokens = backend.info.max_text_tokens - backend.prompt_tokens(prompt)
    if max_tokens is not None and max_tokens < 1:
        raise InvalidInput(
            "the prompt leaves no room for text in the model's token window", param="prompt_name"
        )
    encoded: list[Encoded | None] | None = None
    if backend is None or max_tokens is None or len(text) <= max_tokens or chunk_size <= max_tokens:
        chunks = split_text(text, chunk_size)
    else:
        counter = CountingEncoder.of(backend, prompt) if keep else None
        chunks = await asyncio.to_thread(
            split_text, text, chunk_size, max_tokens=max_tokens, count_tokens=counter or backend.count_tokens
        )
        if counter is not None:
            encoded = counter.inputs_for([c.text for c in chunks])
    if not chunks:
        raise InvalidInput(f"{param} has no content to {what}", param=param)
    check_chunks(settings, len(chunks), param="chunk_size")
    return chunks, encoded


# ---- the request step --------------------------------------------------------------------------
@dataclass(slots=True)
class Pending:
    """One request's chunks in a backend's queue, bound to the request's deadline.

    Await them all (`results`), or as each completes (server/api/streaming.py reads `futures`
    and `deadline`). `cancel()` drops whatever is still queued: it is then never computed.
    """

    futures: list[asyncio.Future[ItemResult]]
    timeout_s: float
    deadline: float  # event-loop time at which the request's deadline passes

    async def results(self, request: Request) -> list[ItemResult]:
        """Every chunk's result, in order; 504 past the deadline, 499 when the client leaves."""
        return await run_cancellable(
            request, gather_results(self.futures), self.timeout_s, deadline=self.deadline
        )

    def cancel(self) -> None:
        cancel_all(self.futures)


def submit(
    backend: Backend,
    texts: Sequence[str],
    timeout_s: float,
    *,
    prompt: str | None = None,
    query: str | None = None,
    encoded: Sequence[Encoded | None] | None = None,
) -> Pending:
    """Queue checked inputs with the request's deadline: the one way routes reach a backend.

    `prompt` is prepended to each text (None: the model's default); with `query`, each text is a
    document scored against it; `encoded` (from `chunk_for_model`) holds inputs already tokenised.
    May refuse at once: 503 + Retry-After when the queue would make the request late, 504 when
    even an idle model could not meet the deadline.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    futures = backend.submit(texts, deadline_s=timeout_s, prompt=prompt, query=query, encoded=encoded)
    return Pending(futures, timeout_s, deadline)


async def infer(
    request: Request,
    backend: Backend,
    texts: Sequence[str],
    timeout_s: float,
    *,
    prompt: str | None = None,
    query: str | None = None,
    encoded: Sequence[Encoded | None] | None = None,
) -> list[ItemResult]:
    """`submit()` then await every result: the whole step for a route that answers at once."""
    return await submit(backend, texts, timeout_s, prompt=prompt, query=query, encoded=encoded).results(
        request
    )
