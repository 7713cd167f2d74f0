"""What a model can take: its token window (position table included) and its Matryoshka dimensions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.errors import ModelLoadError

# These architectures number positions from pad_token_id + 1 (RoBERTa's create_position_ids_from_
# input_ids), so a table of max_position_embeddings rows holds that many fewer tokens: 514 -> 512.
# text-embeddings-inference subtracts the same offset for roberta, xlm-roberta and camembert;
# mpnet and data2vec-text share the embedding code.
_PADDING_OFFSET_TYPES = frozenset({"roberta", "xlm-roberta", "camembert", "mpnet", "data2vec-text"})
# transformers' "no limit" model_max_length (VERY_LARGE_INTEGER) and kin.
_UNBOUNDED = 1_000_000


def position_limit(config: Any) -> int | None:
    """Tokens the position table can index, or None when the config does not say."""
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    pad = getattr(config, "pad_token_id", None)
    if getattr(config, "model_type", None) in _PADDING_OFFSET_TYPES and isinstance(pad, int):
        return positions - pad - 1
    return positions


def max_tokens(config: Any, *, st_max_seq_length: int | None, tokenizer_max_length: int | None) -> int:
    """Tokens per input, special tokens included.

    As sentence-transformers decides: its max_seq_length when the model declares one, else the
    tokenizer's model_max_length capped at max_position_embeddings. Then, as TEI does, never past
    what the position table can index (sentence-transformers would let RoBERTa read row 514).
    """
    raw_positions = getattr(config, "max_position_embeddings", None)
    if st_max_seq_length is not None:
        declared: int | None = st_max_seq_length
    else:
        tok = tokenizer_max_length if tokenizer_max_length and tokenizer_max_length < _UNBOUNDED else None
        bounds = [x for x in (tok, raw_positions) if isinstance(x, int) and x > 0]
        declared = min(bounds) if bounds else None
    limit = position_limit(config)
    candidates = [x for x in (declared, limit) if x is not None]
    return min(candidates) if candidates else 512


def matryoshka_dims(config: Any, dim: int, override: Sequence[int] = ()) -> tuple[int, ...]:
    """Dimensions an embedding may be truncated to; () when the model is not a Matryoshka model.

    As vLLM reads config.json: `matryoshka_dimensions` lists them; `is_matryoshka: true` without
    a list allows any prefix. An operator's list (ModelSpec.matryoshka_dims) wins.
    """
    if override:
        bad = [d for d in override if not 0 < d <= dim]
        if bad:
            raise ModelLoadError(f"matryoshka dimensions {bad} are outside 1..{dim}")
        return tuple(sorted(set(override)))
    listed = getattr(config, "matryoshka_dimensions", None)
    if isinstance(listed, (list, tuple)) and listed:
        return tuple(sorted({int(d) for d in listed if 0 < int(d) <= dim}))
    if getattr(config, "is_matryoshka", False) is True:
        return tuple(range(1, dim + 1))
    return ()
