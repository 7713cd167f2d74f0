"""The bench corpus: deterministic, sized as documented in MiniLM tokens, and user files."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from models.loader import default_model_path
from server.bench.corpus import PROFILES, build_corpus, load_file
from server.chunking import split_text


def test_same_arguments_give_the_same_texts() -> None:
    for profile in PROFILES:
        assert build_corpus(profile, 20, seed=3) == build_corpus(profile, 20, seed=3)
    assert build_corpus("short", 20, seed=1) != build_corpus("short", 20, seed=2)
    assert build_corpus("short", 5) == build_corpus("short", 50)[:5]  # a prefix of a bigger corpus


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        build_corpus("huge")


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return AutoTokenizer.from_pretrained(str(default_model_path()))


@pytest.mark.parametrize(
    ("profile", "low", "high"),
    [("short", 17, 21), ("paragraph", 120, 140)],
)
def test_profiles_have_the_documented_token_counts(tokenizer, profile: str, low: int, high: int) -> None:  # type: ignore[no-untyped-def]
    texts = build_corpus(profile, 300)
    counts = [len(ids) for ids in tokenizer(texts)["input_ids"]]  # with [CLS] and [SEP], as served
    assert low <= statistics.mean(counts) <= high


def test_long_texts_make_several_chunks_and_mixed_ones_spread(tokenizer) -> None:  # type: ignore[no-untyped-def]
    long_texts = build_corpus("long", 100)
    assert all(2000 <= len(t) <= 4500 for t in long_texts)
    chunks = [c for t in long_texts for c in split_text(t, 1000)]
    assert len(chunks) >= 3 * len(long_texts)
    mixed = build_corpus("mixed", 300)
    counts = sorted(len(ids) for ids in tokenizer(mixed)["input_ids"])
    assert counts[0] < 20 and counts[-1] > 150  # a real spread, so padding matters
    assert all(len(split_text(t, 1000)) == 1 for t in mixed)


def test_load_file_reads_lines_and_jsonl(tmp_path: Path) -> None:
    txt = tmp_path / "texts.txt"
    txt.write_text("first text\n\n  second text \n", encoding="utf-8")
    assert load_file(txt) == ["first text", "  second text "]
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text('{"text": "a b c"}\n{"text": "d e"}\n', encoding="utf-8")
    assert load_file(jsonl) == ["a b c", "d e"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", "\n\n", "holds no texts"),
        ("bad.jsonl", '{"text": "ok"}\nnot json\n', "bad.jsonl:2: not JSON"),
        ("shape.jsonl", '{"body": "x"}\n', 'expected an object with a "text" string'),
    ],
)
def test_load_file_errors_name_the_problem(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_file(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_file(tmp_path / "missing.txt")
