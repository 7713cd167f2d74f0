"""Convoy's loader against sentence-transformers / transformers on the same real model folders:
encode -> collate -> forward must give what the reference gives, for every shape."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from sentence_transformers import CrossEncoder, SentenceTransformer

from models.base import Model
from models.loader import ModelSpec, load_model
from models.plan import NO_ST_FILES
from tests.support.st_models import LABELS

pytestmark = pytest.mark.integration

# Mixed lengths in one batch: padding must change nothing; the long one is truncated.
TEXTS = [
    "Hello!",
    "convoys batch requests " * 200,
    "Ünïcödé àccents, 日本語, emoji 🚀",
    "MiXeD CaSe WoRdS like NASA",
    "A sentence of ordinary length about dynamic batching.",
]

EMBED_SHAPES: dict[str, dict[str, Any]] = {
    "cls_dense_normalize": {"pooling": "cls", "normalized": True, "dense_layers": 1, "dim": 256},
    "lasttoken": {"pooling": "lasttoken", "normalized": False, "dim": 384},
    "max": {"pooling": "max", "normalized": False},
    "weightedmean": {"pooling": "weightedmean", "normalized": False},
    "cls_mean": {"pooling": "cls+mean", "dim": 768},
    "plain": {"pooling": "mean", "pooling_source": NO_ST_FILES, "normalized": False, "max_tokens": 512},
    "prompted": {
        "pooling": "mean",
        "normalized": True,
        "default_prompt": "query: ",
        "default_prompt_name": "query",
    },
    "prompted_exclusive": {"pooling": "mean", "default_prompt": "query: "},
    "lowercase": {"do_lower_case": True, "max_tokens": 128, "dim": 32},
    "tiny_roberta": {"max_tokens": 512, "pooling_source": NO_ST_FILES},
}

StModel = Callable[[str], Path]


def load(folder: Path, **spec: Any) -> Model:
    return load_model(ModelSpec(source=str(folder), torch_threads=1, warmup_batch_size=1, **spec))


def embed(model: Model, texts: list[str], prompt: str | None = None) -> npt.NDArray[np.float32]:
    return model.forward(model.collate(model.encode(texts, prompt=prompt))).vectors


def reference_embedder(folder: Path, model: Model) -> SentenceTransformer:
    reference = SentenceTransformer(str(folder), device="cpu")
    # sentence-transformers would read past a RoBERTa position table (test_roberta shows it).
    reference.max_seq_length = min(reference.max_seq_length, model.info.max_tokens)
    return reference


def assert_same_rows(got: npt.NDArray[np.float32], expected: Any) -> None:
    expected = np.asarray(expected, dtype=np.float32)
    assert got.shape == expected.shape
    cosines = np.sum(got * expected, axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
    )
    assert (cosines >= 0.9999).all(), cosines
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", list(EMBED_SHAPES))
def test_embeddings_equal_sentence_transformers(shape: str, st_model: StModel) -> None:
    folder = st_model(shape)
    model = load(folder)
    for field, value in EMBED_SHAPES[shape].items():
        assert getattr(model.info, field) == value, field
    assert_same_rows(embed(model, TEXTS), reference_embedder(folder, model).encode(TEXTS))


def test_normalised_rows_carry_their_norm_before_normalising(st_model: StModel) -> None:
    model = load(st_model("cls_dense_normalize"))
    out = model.forward(model.prepare(TEXTS))
    assert out.norms is not None
    np.testing.assert_allclose(np.linalg.norm(out.vectors, axis=1), 1.0, rtol=1e-5)
    assert (out.norms > 0).all() and not np.allclose(out.norms, 1.0)
    np.testing.assert_array_equal(out.tokens, [len(e.ids) for e in model.encode(TEXTS)])
    unnormalised = load(st_model("max"))
    assert unnormalised.forward(unnormalised.prepare(TEXTS)).norms is None


@pytest.mark.parametrize("shape", ["prompted", "prompted_exclusive"])
def test_prompts_named_default_and_none_equal_sentence_transformers(shape: str, st_model: StModel) -> None:
    folder = st_model(shape)
    model = load(folder)
    reference = reference_embedder(folder, model)
    assert dict(model.info.prompts) == reference.prompts
    assert_same_rows(embed(model, TEXTS), reference.encode(TEXTS))  # each side picks its default
    assert_same_rows(embed(model, TEXTS, "passage: "), reference.encode(TEXTS, prompt_name="passage"))
    assert_same_rows(embed(model, TEXTS, ""), reference.encode(TEXTS, prompt=""))
    # One batch mixing prompts (and so prompt lengths) and input lengths.
    batch = model.encode(TEXTS[:2], prompt="query: ") + model.encode(TEXTS[2:], prompt="passage: ")
    expected = np.concatenate(
        [reference.encode(TEXTS[:2], prompt="query: "), reference.encode(TEXTS[2:], prompt="passage: ")]
    )
    assert_same_rows(model.forward(model.collate(batch)).vectors, expected)


def test_include_prompt_false_pools_without_the_prompts_tokens(st_model: StModel) -> None:
    inclusive, exclusive = load(st_model("prompted")), load(st_model("prompted_exclusive"))
    (encoded,) = exclusive.encode(["hello"], prompt="query: ")
    assert encoded.prompt_length == 3  # [CLS] query : -- as sentence-transformers counts it
    assert inclusive.encode(["hello"], prompt="query: ")[0].prompt_length == 0
    a, b = embed(inclusive, ["hello"], "query: "), embed(exclusive, ["hello"], "query: ")
    assert float(np.dot(a[0], b[0])) < 0.999  # the same weights, a different pooling window


def test_lower_casing_makes_case_irrelevant(st_model: StModel) -> None:
    model = load(st_model("lowercase"))
    upper, lower = embed(model, ["HELLO Convoy"]), embed(model, ["hello convoy"])
    np.testing.assert_allclose(upper, lower, rtol=1e-6)
    assert model.encode(["HELLO"])[0].ids == model.encode(["hello"])[0].ids


@pytest.mark.parametrize(("shape", "activation"), [("multilabel", "sigmoid"), ("single_label", "softmax")])
def test_classifier_scores_equal_the_transformers_pipeline(
    shape: str, activation: str, st_model: StModel
) -> None:
    from transformers import pipeline

    folder = st_model(shape)
    model = load(folder)
    assert (model.info.task, model.info.activation, model.info.labels) == ("classify", activation, LABELS)
    out = model.forward(model.prepare(TEXTS))
    classifier = pipeline("text-classification", model=str(folder), top_k=None, device="cpu")
    expected = [
        [next(d["score"] for d in row if d["label"] == label) for label in LABELS]
        for row in classifier(TEXTS, truncation=True)
    ]
    np.testing.assert_allclose(out.vectors, expected, atol=1e-5)
    assert out.raw is not None
    sums = out.vectors.sum(axis=1)
    assert np.allclose(sums, 1.0) == (activation == "softmax")  # multi-label rows are independent
    activate = torch.sigmoid if activation == "sigmoid" else lambda t: torch.softmax(t, dim=-1)
    np.testing.assert_allclose(activate(torch.from_numpy(out.raw)).numpy(), out.vectors, rtol=1e-6)


def test_cross_encoder_scores_equal_predict(st_model: StModel) -> None:
    folder = st_model("cross_encoder")
    model = load(folder)
    assert (model.info.task, model.info.activation, model.info.dim) == ("rerank", "sigmoid", 1)
    query, documents = "what batches requests?", TEXTS
    out = model.forward(model.collate(model.encode_pairs(query, documents)))
    expected = CrossEncoder(str(folder), device="cpu").predict([(query, d) for d in documents])
    assert out.vectors.shape == (len(documents), 1)
    np.testing.assert_allclose(out.vectors[:, 0], expected, atol=1e-5)
    assert out.raw is not None
    np.testing.assert_allclose(torch.sigmoid(torch.from_numpy(out.raw)).numpy(), out.vectors, rtol=1e-6)


def test_an_explicit_task_wins_over_detection(st_model: StModel) -> None:
    model = load(st_model("single_label"), task="embed")
    assert (model.info.task, model.info.pooling, model.info.pooling_source) == ("embed", "mean", NO_ST_FILES)
    assert embed(model, ["hello"]).shape == (1, 384)


def test_a_pooling_override_changes_the_pipeline(st_model: StModel) -> None:
    model = load(st_model("max"), pooling="cls")
    assert (model.info.pooling, model.info.pooling_source) == ("cls", "override")
    reference = SentenceTransformer(str(st_model("cls_mean")), device="cpu")
    assert_same_rows(embed(model, TEXTS), reference.encode(TEXTS)[:, :384])  # cls+mean's cls half


def test_bfloat16_embeddings_stay_finite_and_close_to_float32() -> None:
    """On CPU the half-precision path is bfloat16; pooling and normalising still run in float32."""
    model = load_model(ModelSpec(dtype="bfloat16", torch_threads=1, warmup_batch_size=1))
    assert model.info.dtype == "bfloat16"
    got = embed(model, TEXTS)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    float32 = embed(load_model(ModelSpec(torch_threads=1, warmup_batch_size=1)), TEXTS)
    assert (np.sum(got * float32, axis=1) >= 0.99).all()


def test_matryoshka_dimensions_come_from_the_spec_or_not_at_all() -> None:
    assert load_model(ModelSpec(torch_threads=1, warmup_batch_size=1)).info.matryoshka_dims == ()
    spec = ModelSpec(torch_threads=1, warmup_batch_size=1, matryoshka_dims=(256, 128))
    assert load_model(spec).info.matryoshka_dims == (128, 256)


def test_server_prompts_and_default_apply_as_the_model_would(st_model: StModel) -> None:
    folder = st_model("prompted_exclusive")
    model = load(folder, prompts=(("code", "code: "),), default_prompt_name="passage")
    info = model.info
    assert (info.default_prompt_name, info.default_prompt) == ("passage", "passage: ")
    assert ("code", "code: ") in info.prompts and ("query", "query: ") in info.prompts
    reference = reference_embedder(folder, model)
    assert_same_rows(embed(model, TEXTS), reference.encode(TEXTS, prompt_name="passage"))
    assert_same_rows(embed(model, TEXTS, "code: "), reference.encode(TEXTS, prompt="code: "))
