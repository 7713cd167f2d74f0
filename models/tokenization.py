"""InputEncoder: text -> Encoded inputs (ids, type ids, prompt length), as sentence-transformers
tokenises them, without the network: a front-end process can hold one and no weights."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from tokenizers import Encoding, Tokenizer
from tokenizers.normalizers import Lowercase
from tokenizers.normalizers import Sequence as NormalizerSequence
from transformers import PreTrainedTokenizerBase

from models.base import Encoded, TokenIdError, TokenSpan
from models.errors import ModelLoadError

# Prompt lengths remembered per encoder; the model's named prompts fit many times over.
_PROMPT_CACHE_SIZE = 256


class InputEncoder:
    """Tokenisation for one model.

    Thread-safe: the Rust tokenizers are copied from the model's tokenizer and configured
    (truncation, padding, lower-casing) once here; afterwards they are only read, so any
    thread may encode concurrently. `transformers`' tokenizer __call__ is avoided on the hot
    path: it costs several times the Rust encode per text.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_tokens: int,
        do_lower_case: bool = False,
        include_prompt: bool = True,
        default_prompt: str | None = None,
    ) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if not isinstance(backend, Tokenizer):
            raise ModelLoadError(f"{type(tokenizer).__name__} has no fast (Rust) tokenizer; Convoy needs one")
        whole = Tokenizer.from_str(backend.to_str())
        whole.no_padding()  # saved tokenizer.json files may pad to a fixed length: collate pads
        whole.no_truncation()
        if do_lower_case and not _has_lowercase(whole.normalizer):
            # What sentence-transformers' Transformer does for do_lower_case: Lowercase first.
            whole.normalizer = NormalizerSequence([Lowercase(), *_normalizers(whole.normalizer)])
        cut = Tokenizer.from_str(whole.to_str())
        cut.enable_truncation(
            max_tokens, strategy="longest_first", direction=getattr(tokenizer, "truncation_side", "right")
        )
        self._whole = whole  # never truncates: counting, /tokenize, truncate=False
        self._cut = cut  # truncates to max_tokens, longest sequence first for pairs
        self._hf = tokenizer  # only for decode, under a lock: it is not safe to share mid-call
        self._decode_lock = threading.Lock()
        self._special_ids = frozenset(int(i) for i in tokenizer.all_special_ids)
        # Single texts get all-zero type ids from nearly every template ([CLS] A [SEP]): then
        # Encoded carries None and the hot path never reads them (each getter costs a list).
        self._single_type_ids = any(whole.encode("a b").type_ids)
        self._include_prompt = include_prompt
        self._prompt_lengths: dict[str, int] = {}
        self._prompt_token_counts: dict[str, int] = {}
        self.max_tokens = max_tokens
        self.default_prompt = default_prompt
        self.special_tokens = int(tokenizer.num_special_tokens_to_add(pair=False))
        self.pad_id = int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else 0
        self.takes_type_ids = "token_type_ids" in tokenizer.model_input_names
        self.vocab_size = len(tokenizer)

    def encode(
        self, texts: Sequence[str], *, prompt: str | None = None, truncate: bool = True
    ) -> list[Encoded]:
        """`prompt` None applies the default prompt; "" applies none. The prompt is prepended to
        the text, as sentence-transformers does, and counts against max_tokens."""
        prompt = self._resolve(prompt)
        inputs = [prompt + t for t in texts] if prompt else list(texts)
        encodings = (self._cut if truncate else self._whole).encode_batch_fast(inputs)
        skip = self._prompt_length(prompt) if prompt and not self._include_prompt else 0
        if not self._single_type_ids:
            return [Encoded(e.ids, None, skip) for e in encodings]
        return [Encoded(e.ids, e.type_ids, skip) for e in encodings]

    def encode_pairs(
        self, query: str, documents: Sequence[str], *, prompt: str | None = None, truncate: bool = True
    ) -> list[Encoded]:
        """(query, document) pairs; CrossEncoder prepends a prompt to the query."""
        prompt = self._resolve(prompt)
        pairs = [(prompt + query, d) for d in documents]
        encodings = (self._cut if truncate else self._whole).encode_batch_fast(pairs)
        return [Encoded(e.ids, e.type_ids, 0) for e in encodings]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._whole.encode_batch_fast(list(texts), add_special_tokens=False)]

    def prompt_tokens(self, prompt: str) -> int:
        """The prompt's own tokens (asked on every request that has a prompt: remembered)."""
        if not prompt:
            return 0
        return _remembered(self._prompt_token_counts, prompt, lambda: self.count_tokens([prompt])[0])

    def tokenize(
        self, texts: Sequence[str], *, add_special_tokens: bool = True, prompt: str | None = None
    ) -> list[list[TokenSpan]]:
        prompt = self._resolve(prompt)
        inputs = [prompt + t for t in texts]
        return [
            _spans(text, encoding)
            for text, encoding in zip(
                inputs, self._whole.encode_batch(inputs, add_special_tokens=add_special_tokens), strict=True
            )
        ]

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        # The tokenizer decodes an unknown id to nothing, silently: check the range first.
        for i, row in enumerate(ids):
            for token_id in row:
                if not 0 <= token_id < self.vocab_size:
                    raise TokenIdError(i, token_id, self.vocab_size)
        with self._decode_lock:
            texts = self._hf.batch_decode([list(r) for r in ids], skip_special_tokens=True)
        return [str(t) for t in texts]

    def _resolve(self, prompt: str | None) -> str:
        return (self.default_prompt or "") if prompt is None else prompt

    def _prompt_length(self, prompt: str) -> int:
        """Leading tokens of the prompt, as sentence-transformers measures them
        (Transformer._get_prompt_length): the prompt tokenised alone, special tokens and
        truncation included, less a trailing special token ([SEP], </s>). So [CLS] counts as
        a prompt token and is excluded from pooling too."""

        def length() -> int:
            ids = self._cut.encode(prompt).ids
            return len(ids) - (1 if ids and ids[-1] in self._special_ids else 0)

        return _remembered(self._prompt_lengths, prompt, length)


def _remembered(cache: dict[str, int], prompt: str, compute: Callable[[], int]) -> int:
    """`compute()` for `prompt`, remembered in `cache` up to _PROMPT_CACHE_SIZE prompts (bounded:
    prompts may be free text). A race between threads only computes the same value twice."""
    value = cache.get(prompt)
    if value is None:
        value = compute()
        if len(cache) < _PROMPT_CACHE_SIZE:
            cache[prompt] = value
    return value


def _spans(text: str, encoding: Encoding) -> list[TokenSpan]:
    spans = []
    for token_id, token, (start, stop), special in zip(
        encoding.ids, encoding.tokens, encoding.offsets, encoding.special_tokens_mask, strict=True
    ):
        if special:
            spans.append(TokenSpan(id=token_id, text=token, special=True, start=None, stop=None))
        else:
            spans.append(TokenSpan(id=token_id, text=text[start:stop], special=False, start=start, stop=stop))
    return spans


def _has_lowercase(normalizer: object) -> bool:
    """sentence-transformers' test (transformer.py _has_lowercase): a Lowercase normalizer, alone
    or in a Sequence. A BertNormalizer that lower-cases does not count there, so not here either."""
    return any(isinstance(n, Lowercase) for n in _normalizers(normalizer))


def _normalizers(normalizer: object) -> list[Any]:
    """A Sequence's members (iterable at run time, though the stubs do not say so), else itself."""
    if normalizer is None:
        return []
    if isinstance(normalizer, NormalizerSequence):
        return list(cast(Iterable[Any], normalizer))
    return [normalizer]
