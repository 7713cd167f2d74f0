"""Request inputs and the one request step: limits -> chunks -> submit with a deadline -> await.

Every inference route goes through `submit()` here, so none can forget the request's deadline
(X-Request-Timeout, or CONVOY_REQUEST_TIMEOUT_S) or its client's disconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.requests import Request

from server.api.cancellation import cancel_all, run_cancellable
from server.batching.backend import Backend, ItemResult, gather_results
from server.chunking import Chunk, split_text
from server.config import Settings
from server.errors import InvalidInput, LimitExceeded


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


# ---- chunking ----------------------------------------------------------------------------------
async def chunk_text(
    text: str,
    chunk_size: int,
    settings: Settings,
    backend: Backend | None = None,
    *,
    what: str = "predict on",
) -> list[Chunk]:
    """Split `text` within the request limits; with a backend, also within its model's token window.

    The tokenizer is consulted (off the event loop) only when a chunk could exceed the window.
    """
    check_chars(settings, len(text), param="text")
    max_tokens = backend.info.max_text_tokens if backend is not None else None
    if backend is None or max_tokens is None or len(text) <= max_tokens or chunk_size <= max_tokens:
        chunks = split_text(text, chunk_size)
    else:
        chunks = await asyncio.to_thread(
            split_text, text, chunk_size, max_tokens=max_tokens, count_tokens=backend.count_tokens
        )
    if not chunks:
        raise InvalidInput(f"text has no content to {what}", param="text")
    check_chunks(settings, len(chunks), param="chunk_size")
    return chunks


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


def submit(backend: Backend, texts: Sequence[str], timeout_s: float) -> Pending:
    """Queue checked inputs with the request's deadline: the one way routes reach a backend.

    May refuse at once: 503 + Retry-After when the queue would make the request late, 504 when
    even an idle model could not meet the deadline.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    return Pending(backend.submit(texts, deadline_s=timeout_s), timeout_s, deadline)


async def infer(
    request: Request, backend: Backend, texts: Sequence[str], timeout_s: float
) -> list[ItemResult]:
    """`submit()` then await every result: the whole step for a route that answers at once."""
    return await submit(backend, texts, timeout_s).results(request)
