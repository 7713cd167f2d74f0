"""split_text(): boundaries, limits and exact offsets, example-based and property-based."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.chunking import split_text

_alphabet = st.sampled_from(list("abcdefghij  \n\n\t.!?,;é中ß\u00a0"))
texts = st.text(alphabet=_alphabet, max_size=600) | st.text(max_size=300)


def words(texts: Sequence[str]) -> list[int]:
    return [len(t.split()) for t in texts]


@given(text=texts, size=st.integers(min_value=1, max_value=120))
@settings(max_examples=300, deadline=None)
def test_chunks_are_exact_ordered_bounded_and_lose_nothing(text: str, size: int) -> None:
    chunks = split_text(text, size)
    pos = 0
    for i, c in enumerate(chunks):
        assert c.index == i
        assert text[c.start : c.end] == c.text
        assert 0 < len(c.text) <= size
        assert c.start >= pos  # ordered, no overlap
        assert not c.text[0].isspace() and not c.text[-1].isspace()
        # whatever lies between two chunks is whitespace only: nothing lost
        assert text[pos : c.start].strip() == ""
        pos = c.end
    assert text[pos:].strip() == ""
    assert "".join(text.split()) == "".join("".join(c.text for c in chunks).split())


@given(text=texts, size=st.integers(min_value=4, max_value=200), max_tokens=st.integers(2, 20))
@settings(max_examples=200, deadline=None)
def test_token_limit_is_kept(text: str, size: int, max_tokens: int) -> None:
    chunks = split_text(text, size, max_tokens=max_tokens, count_tokens=words)
    for c in chunks:
        assert len(c.text.split()) <= max_tokens or len(c.text.split()) == 1
        assert text[c.start : c.end] == c.text and len(c.text) <= size


def test_prefers_paragraph_then_sentence_then_word_boundaries() -> None:
    text = "First sentence here. Second one.\n\nNew paragraph that is long enough."
    assert [c.text for c in split_text(text, 40)] == [
        "First sentence here. Second one.",
        "New paragraph that is long enough.",
    ]
    assert [c.text for c in split_text(text, 25)] == [
        "First sentence here.",
        "Second one.",
        "New paragraph that is",
        "long enough.",
    ]


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    chunks = split_text("tiny Supercalifragilistic", 10)
    assert [c.text for c in chunks] == ["tiny", "Supercalif", "ragilistic"]


def test_blank_text_gives_no_chunks_and_bad_size_is_refused() -> None:
    assert split_text(" \n\t ", 10) == []
    with pytest.raises(ValueError):
        split_text("x", 0)
