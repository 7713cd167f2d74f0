"""The built-in probes of `convoy verify`: texts (and query/document pairs) that exercise the
tokenizer and the pipeline's edges: short, long past any window, unicode, case, code, spacing."""

from __future__ import annotations

from collections.abc import Iterable

_PARAGRAPH = (
    "Dynamic batching groups requests that arrive close together so the model runs them as one "
    "batch. Long inputs are cut at the model's token window, short ones are padded to the longest "
    "input of their batch, and the padding must never change anyone's result. "
)

TEXTS: tuple[str, ...] = (
    "Hello, world!",
    "a",
    "The quick brown fox jumps over the lazy dog.",
    "MiXeD CaSe WoRdS, ACRONYMS like NASA and GPU, and lower case.",
    "Ünïcödé àccents, 日本語のテキスト, emoji 🚀🔥, Ελληνικά and русский текст.",
    "def square(x): return x ** 2  # 3.14159, 1e-9, 0xFF, snake_case",
    "  leading spaces,\ttabs,\nnewlines and trailing spaces  ",
    _PARAGRAPH,
    _PARAGRAPH * 12,  # past every window: truncation must match
)

QUERY = "How does dynamic batching keep results exact?"

DOCUMENTS: tuple[str, ...] = (
    "Padding is masked out, so batching never changes a result.",
    "The weather in Lisbon is mild in spring.",
    "a",
    "Ünïcödé, 日本語, emoji 🚀: the tokenizer must agree on all of them.",
    _PARAGRAPH * 12,  # the pair exceeds the window: longest-first truncation must match
)

LONG_QUERY = (_PARAGRAPH * 6, _PARAGRAPH * 6)  # both halves long: truncation takes from both


def pairs() -> list[tuple[str, str]]:
    return [(QUERY, d) for d in DOCUMENTS] + [LONG_QUERY]


def pairs_from_lines(lines: Iterable[str]) -> list[tuple[str, str]]:
    """`query<TAB>document` per line; a line without a tab is a document for the built-in query."""
    out = []
    for line in lines:
        query, tab, document = line.partition("\t")
        out.append((query, document) if tab else (QUERY, line))
    return out
