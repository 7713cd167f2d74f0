"""split_text(): cut a text into chunks at paragraph, sentence, then word boundaries."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Coarsest first: a piece too long at one level is cut again at the next one.
_SEPARATORS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\n[ \t\r\f\v]*\n\s*"),  # paragraphs: a blank line
    re.compile(r"(?<=[.!?;:。！？…])\s+"),  # sentences: whitespace after closing punctuation
    re.compile(r"\s+"),  # words
)

TokenCounter = Callable[[Sequence[str]], Sequence[int]]

# Largest chunk size a request may ask for, in characters.
MAX_CHUNK_SIZE = 1_000_000


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a text; `text == source[start:end]` always holds."""

    index: int
    start: int
    end: int
    text: str


def split_text(
    text: str,
    chunk_size: int,
    *,
    max_tokens: int | None = None,
    count_tokens: TokenCounter | None = None,
) -> list[Chunk]:
    """Split `text` into ordered, non-overlapping chunks of at most `chunk_size` characters.

    Boundaries are preferred in this order: blank line, end of sentence, whitespace; a single
    word longer than `chunk_size` is cut hard. Whitespace between chunks is dropped, so every
    non-whitespace character lands in exactly one chunk. When `max_tokens` and `count_tokens`
    are given, chunks the tokenizer finds too long are cut again until they fit.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    spans = _split(text, 0, len(text), chunk_size, 0)
    if max_tokens is not None and count_tokens is not None:
        spans = _fit_tokens(text, spans, max_tokens, count_tokens)
    return [Chunk(i, s, e, text[s:e]) for i, (s, e) in enumerate(spans)]


def _split(text: str, start: int, end: int, limit: int, level: int) -> list[tuple[int, int]]:
    start, end = _strip(text, start, end)
    if start >= end:
        return []
    if end - start <= limit:
        return [(start, end)]
    if level == len(_SEPARATORS):
        return [(s, min(s + limit, end)) for s in range(start, end, limit)]

    spans: list[tuple[int, int]] = []
    cur_start: int | None = None
    cur_end = start
    for seg_start, seg_end in _segments(text, start, end, _SEPARATORS[level]):
        if seg_end - seg_start > limit:
            if cur_start is not None:
                spans.append((cur_start, cur_end))
                cur_start = None
            spans.extend(_split(text, seg_start, seg_end, limit, level + 1))
        elif cur_start is None:
            cur_start, cur_end = seg_start, seg_end
        elif seg_end - cur_start <= limit:
            cur_end = seg_end
        else:
            spans.append((cur_start, cur_end))
            cur_start, cur_end = seg_start, seg_end
    if cur_start is not None:
        spans.append((cur_start, cur_end))
    return spans


def _segments(text: str, start: int, end: int, sep: re.Pattern[str]) -> list[tuple[int, int]]:
    """The non-empty, stripped pieces of text[start:end] between matches of `sep`."""
    out: list[tuple[int, int]] = []
    pos = start
    for m in sep.finditer(text, start, end):
        if m.start() > pos:
            out.append(_strip(text, pos, m.start()))
        pos = m.end()
    if pos < end:
        out.append(_strip(text, pos, end))
    return [(s, e) for s, e in out if s < e]


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _fit_tokens(
    text: str, spans: list[tuple[int, int]], max_tokens: int, count_tokens: TokenCounter
) -> list[tuple[int, int]]:
    # A WordPiece/BPE token covers at least one character, so short spans cannot overflow:
    # only count the ones that could.
    suspects = [i for i, (s, e) in enumerate(spans) if e - s > max_tokens]
    if not suspects:
        return spans
    counts = count_tokens([text[spans[i][0] : spans[i][1]] for i in suspects])
    too_long = {i: n for i, n in zip(suspects, counts, strict=True) if n > max_tokens}
    if not too_long:
        return spans
    out: list[tuple[int, int]] = []
    for i, (s, e) in enumerate(spans):
        if i not in too_long:
            out.append((s, e))
            continue
        # Shrink the character budget in proportion to the overflow, with a margin.
        limit = max(1, min(e - s - 1, (e - s) * max_tokens * 9 // (too_long[i] * 10)))
        out.extend(_fit_tokens(text, _split(text, s, e, limit, 0), max_tokens, count_tokens))
    return out
