"""InputEncoder against transformers' own tokenizer call, with MiniLM's real tokenizer (no weights)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from models.base import TokenIdError
from models.hub import default_model_path
from models.tokenization import InputEncoder

TEXTS = ["Hello, world!", "Ünïcödé 日本語 🚀 text", "a", "word " * 300]


@pytest.fixture(scope="module")
def hf() -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(str(default_model_path()))


@pytest.fixture(scope="module")
def encoder(hf: PreTrainedTokenizerBase) -> InputEncoder:
    return InputEncoder(hf, max_tokens=128, include_prompt=False)


def test_ids_equal_the_tokenizer_call_with_truncation(
    encoder: InputEncoder, hf: PreTrainedTokenizerBase
) -> None:
    expected = hf(TEXTS, truncation=True, max_length=128)
    got = encoder.encode(TEXTS)
    assert [e.ids for e in got] == expected["input_ids"]
    assert all(e.type_ids is None and e.prompt_length == 0 for e in got)
    assert len(got[-1].ids) == 128


def test_untruncated_inputs_come_back_whole(encoder: InputEncoder) -> None:
    (long,) = encoder.encode([TEXTS[-1]], truncate=False)
    assert len(long.ids) == 302  # 300 words + [CLS] + [SEP]: the caller refuses it by length


def test_pairs_equal_the_tokenizer_call_longest_first(
    encoder: InputEncoder, hf: PreTrainedTokenizerBase
) -> None:
    query, docs = "what is batching " * 40, ["short doc", "long doc " * 100]
    expected = hf([query] * 2, docs, truncation=True, max_length=128)
    got = encoder.encode_pairs(query, docs)
    assert [e.ids for e in got] == expected["input_ids"]
    assert [e.type_ids for e in got] == expected["token_type_ids"]


def test_prompt_length_counts_cls_and_not_the_trailing_sep(encoder: InputEncoder) -> None:
    """sentence-transformers' prompt_length: the prompt tokenised alone, less a trailing special
    token. "query: " is [CLS] query : [SEP] -> 3 leading tokens pooling skips."""
    (with_prompt,) = encoder.encode(["hello"], prompt="query: ")
    assert with_prompt.prompt_length == 3
    assert with_prompt.ids[:3] == encoder.encode(["query:"], prompt="")[0].ids[:3]
    (none,) = encoder.encode(["hello"], prompt="")
    assert none.prompt_length == 0


def test_the_default_prompt_applies_unless_a_request_says_otherwise(hf: PreTrainedTokenizerBase) -> None:
    enc = InputEncoder(hf, max_tokens=128, default_prompt="query: ")
    assert enc.encode(["hello"])[0].ids == enc.encode(["query: hello"], prompt="")[0].ids
    assert enc.encode(["hello"], prompt="")[0].ids == enc.encode(["hello"], prompt="")[0].ids
    assert enc.encode(["hello"])[0].prompt_length == 0  # include_prompt true: pooling reads it all


def test_counting_leaves_special_tokens_out(encoder: InputEncoder) -> None:
    assert encoder.count_tokens(["hello world", ""]) == [2, 0]
    assert encoder.prompt_tokens("query: ") == 2 and encoder.prompt_tokens("") == 0
    assert encoder.special_tokens == 2 and encoder.pad_id == 0 and encoder.takes_type_ids


def test_tokenize_gives_offsets_into_the_text_and_marks_specials(encoder: InputEncoder) -> None:
    text = "Hello wörld"
    (spans,) = encoder.tokenize([text])
    assert [s.special for s in spans] == [True, False, False, True]
    assert [(s.text, s.start, s.stop) for s in spans[1:3]] == [("Hello", 0, 5), ("wörld", 6, 11)]
    assert spans[0].text == "[CLS]" and spans[0].start is None
    (bare,) = encoder.tokenize([text], add_special_tokens=False)
    assert [s.id for s in bare] == [s.id for s in spans[1:3]]
    (prompted,) = encoder.tokenize([text], prompt="q: ")
    assert [s.text for s in prompted if not s.special] == ["q", ":", "Hello", "wörld"]


def test_decode_refuses_ids_outside_the_vocabulary(encoder: InputEncoder) -> None:
    assert encoder.decode([[7592, 2088]]) == ["hello world"]
    with pytest.raises(TokenIdError):
        encoder.decode([[7592], [encoder.vocab_size]])


def test_concurrent_encoding_from_many_threads_gives_the_same_ids(encoder: InputEncoder) -> None:
    texts = [f"text number {i} " * (i % 50 + 1) for i in range(400)]
    expected = [e.ids for e in encoder.encode(texts)]
    with ThreadPoolExecutor(8) as pool:
        chunks = list(pool.map(lambda i: encoder.encode(texts[i : i + 10]), range(0, 400, 10)))
    assert [e.ids for chunk in chunks for e in chunk] == expected


def test_prompt_token_counts_are_remembered_per_prompt_and_stay_right(hf: PreTrainedTokenizerBase) -> None:
    encoder = InputEncoder(hf, max_tokens=256)
    calls: list[list[str]] = []
    count = encoder.count_tokens

    def counting(texts: list[str]) -> list[int]:
        calls.append(list(texts))
        return count(texts)

    encoder.count_tokens = counting  # type: ignore[method-assign]
    for _ in range(3):
        assert encoder.prompt_tokens("query: ") == 2
        assert encoder.prompt_tokens("passage: a longer prompt ") == count(["passage: a longer prompt "])[0]
    assert calls == [["query: "], ["passage: a longer prompt "]]  # one tokenizer call per prompt
