"""Rerank: score documents against a query with a cross-encoder; long documents chunk by chunk.

A document longer than the model's window is not truncated (what every peer does, silently
dropping its tail): it is cut with Convoy's chunker, every chunk is scored against the query,
and the document scores as its best chunk, whose span is returned with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.requests import Request

from server.api.cancellation import request_timeout_s
from server.api.inputs import check_chars, check_chunks, check_inputs, chunk_text, infer
from server.batching.backend import Backend, ItemResult
from server.config import Settings
from server.errors import InvalidInput

# Pair templates add more special tokens than single texts ([CLS] q [SEP] d [SEP]: one more;
# RoBERTa's <s> q </s></s> d </s>: two more): leave room for the larger.
_PAIR_EXTRA_SPECIAL = 2
# Characters per chunk to cut first; the tokenizer then cuts what is still over the window.
_CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class DocumentScore:
    """One document's score: its best chunk's, with that chunk's span in the document."""

    index: int
    score: float
    start: int
    end: int
    tokens: int  # of every chunk of the document, special tokens and the query included


@dataclass(frozen=True, slots=True)
class Ranking:
    documents: list[DocumentScore]  # best first (ties: input order)
    results: list[ItemResult]  # every chunk's, for the timing headers

    @property
    def tokens(self) -> int:
        return sum(d.tokens for d in self.documents)


async def rerank(
    request: Request,
    backend: Backend,
    query: str,
    documents: Sequence[str],
    settings: Settings,
    *,
    raw_scores: bool = False,
    param: str = "documents",
) -> Ranking:
    """Every document's score against `query`, best first (ties: input order)."""
    info = backend.info
    if info.task != "rerank":
        raise InvalidInput(
            f"model {info.name!r} is a {info.task} model; reranking needs a rerank (cross-encoder) model",
            param="model",
        )
    if not query.strip():
        raise InvalidInput("query must not be empty", param="query")
    if not documents:
        raise InvalidInput(f"{param} must not be empty", param=param)
    check_inputs(settings, len(documents), param=param)
    check_chars(settings, len(query) + sum(len(d) for d in documents), param=param)
    timeout_s = request_timeout_s(request, settings)
    (query_tokens,) = backend.count_tokens([query])
    room = info.max_text_tokens - _PAIR_EXTRA_SPECIAL - query_tokens - backend.prompt_tokens(None)
    if room < 1:
        raise InvalidInput(
            f"the query has {query_tokens} tokens and leaves no room for a document in model "
            f"{info.name!r}'s window of {info.max_tokens}",
            param="query",
        )
    owners: list[int] = []
    texts: list[str] = []
    spans: list[tuple[int, int]] = []
    for i, document in enumerate(documents):
        if not document.strip():
            raise InvalidInput(f"{param}[{i}] is empty", param=f"{param}[{i}]")
        chunks = await chunk_text(
            document, room * _CHARS_PER_TOKEN, settings, backend, room=room, param=f"{param}[{i}]"
        )
        owners += [i] * len(chunks)
        texts += [c.text for c in chunks]
        spans += [(c.start, c.end) for c in chunks]
    check_chunks(settings, len(texts), param=param)
    results = await infer(request, backend, texts, timeout_s, query=query)
    best: dict[int, tuple[float, int, int]] = {}
    tokens = [0] * len(documents)
    for owner, (start, end), result in zip(owners, spans, results, strict=True):
        tokens[owner] += result.tokens
        row = result.raw if raw_scores and result.raw is not None else result.vector
        score = float(row[0])
        if owner not in best or score > best[owner][0]:
            best[owner] = (score, start, end)
    scored = [DocumentScore(i, score, start, end, tokens[i]) for i, (score, start, end) in best.items()]
    return Ranking(sorted(scored, key=lambda d: (-d.score, d.index)), results)
