"""max_tokens(): sentence-transformers' window, never past the position table; Matryoshka dims."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from models.errors import ModelLoadError
from models.limits import matryoshka_dims, max_tokens, position_limit

VERY_LARGE = int(1e30)  # transformers' model_max_length when nothing is declared


def config(
    model_type: str = "bert", positions: int = 512, pad: int | None = 0, **extra: object
) -> SimpleNamespace:
    return SimpleNamespace(
        model_type=model_type, max_position_embeddings=positions, pad_token_id=pad, **extra
    )


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta", "camembert"])
def test_roberta_family_positions_start_after_the_padding_index(model_type: str) -> None:
    """TEI: max_position_embeddings - pad_token_id - 1, so 514 rows hold 512 tokens."""
    roberta = config(model_type, positions=514, pad=1)
    assert position_limit(roberta) == 512
    assert max_tokens(roberta, st_max_seq_length=None, tokenizer_max_length=VERY_LARGE) == 512
    # sentence-transformers would cap at max_position_embeddings (514) and index past the table.
    assert max_tokens(roberta, st_max_seq_length=None, tokenizer_max_length=514) == 512


def test_bert_keeps_its_whole_table() -> None:
    assert position_limit(config()) == 512
    assert max_tokens(config(), st_max_seq_length=None, tokenizer_max_length=VERY_LARGE) == 512


def test_a_declared_max_seq_length_wins_over_the_tokenizer() -> None:
    assert max_tokens(config(), st_max_seq_length=256, tokenizer_max_length=512) == 256
    assert max_tokens(config(), st_max_seq_length=None, tokenizer_max_length=128) == 128


def test_a_declared_length_past_the_table_is_capped() -> None:
    assert max_tokens(config("xlm-roberta", 514, 1), st_max_seq_length=514, tokenizer_max_length=None) == 512


def test_nothing_declared_falls_back_to_512() -> None:
    bare = SimpleNamespace(model_type="custom")
    assert position_limit(bare) is None
    assert max_tokens(bare, st_max_seq_length=None, tokenizer_max_length=None) == 512


def test_matryoshka_dimensions_as_vllm_reads_config_json() -> None:
    assert matryoshka_dims(config(matryoshka_dimensions=[768, 64, 256, 1024]), 768) == (64, 256, 768)
    assert matryoshka_dims(config(is_matryoshka=True), 4) == (1, 2, 3, 4)  # any prefix
    assert matryoshka_dims(config(), 384) == ()  # not a Matryoshka model: `dimensions` refused


def test_the_operators_matryoshka_dimensions_win() -> None:
    assert matryoshka_dims(config(matryoshka_dimensions=[64]), 384, (128, 256, 128)) == (128, 256)
    with pytest.raises(ModelLoadError, match="outside"):
        matryoshka_dims(config(), 384, (512,))
