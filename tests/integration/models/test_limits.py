"""Token windows that hold: a RoBERTa-family table of 514 rows, and the tokeniser on its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from models.loader import ModelSpec, load_encoder, load_model
from models.tokenization import InputEncoder

pytestmark = pytest.mark.integration

LONG = "convoys batch requests " * 300  # well past 514 tokens

StModel = Callable[[str], Path]


def test_a_514_position_roberta_runs_its_longest_inputs(st_model: StModel) -> None:
    folder = st_model("tiny_roberta")
    model = load_model(ModelSpec(source=str(folder), torch_threads=1, warmup_batch_size=1))
    assert model.info.max_tokens == 512  # 514 rows - pad_token_id 1 - 1
    (encoded,) = model.encode([LONG])
    assert len(encoded.ids) == 512
    (short,) = model.encode(["short"])
    out = model.forward(model.collate([encoded, short]))
    assert np.isfinite(out.vectors).all() and out.tokens.tolist() == [512, len(short.ids)]
    assert len(model.encode([LONG], truncate=False)[0].ids) > 514  # whole, for the caller to refuse


def test_sentence_transformers_own_window_would_index_past_the_table(st_model: StModel) -> None:
    """What the offset prevents: sentence-transformers caps at max_position_embeddings (514)."""
    reference = SentenceTransformer(str(st_model("tiny_roberta")), device="cpu")
    assert reference.max_seq_length == 514
    with pytest.raises((IndexError, RuntimeError), match="index"):
        reference.encode([LONG])


def test_load_encoder_tokenises_like_the_model_without_its_weights(st_model: StModel) -> None:
    spec = ModelSpec(source=str(st_model("prompted_exclusive")), torch_threads=1, warmup_batch_size=1)
    encoder = load_encoder(spec)
    assert isinstance(encoder, InputEncoder)
    model = load_model(spec)
    texts = ["hello", LONG, "Ünïcödé 🚀"]
    assert encoder.encode(texts) == model.encode(texts)
    assert encoder.encode(texts, prompt="passage: ") == model.encode(texts, prompt="passage: ")
    assert encoder.max_tokens == model.info.max_tokens and encoder.default_prompt == "query: "
