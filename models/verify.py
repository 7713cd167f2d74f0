"""verify(): a model loaded the way `convoy serve` loads it, against the reference implementation on
the same folder, probe by probe: SentenceTransformer.encode (embed), CrossEncoder.predict (rerank),
transformers' text-classification pipeline (classify: it applies the head's problem_type)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from models import verify_probes
from models.base import Encoded, Model, ModelInfo
from models.limits import position_limit
from models.loader import load_model
from models.plan import plan_model
from models.spec import ModelSpec

INSTALL_HINT = "pip install 'convoy[verify]'"
# The reference always runs in float32, whatever dtype the checkpoint was saved in.
_FLOAT32: dict[str, Any] = {"dtype": "float32"}


class ReferenceMissing(RuntimeError):
    """sentence-transformers (the reference) is not installed."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    text: str  # the probe; a pair as "query | document"
    prompt: str | None  # the prompt's name ("default": the model's default applies), None: no prompt
    tokens: int  # Convoy's input length, special tokens included
    value: float  # cosine similarity (embed) or the largest absolute score difference
    passed: bool


@dataclass(frozen=True, slots=True)
class Report:
    info: ModelInfo
    reference: str
    measure: Literal["cosine", "max |diff|"]
    tolerance: float  # embed: 1 - cosine allowed; classify/rerank: absolute score difference
    results: tuple[ProbeResult, ...]
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)


def default_tolerance(dtype: str) -> float:
    """float32 must agree to 1e-4; half precision against a float32 reference, to 2e-2."""
    return 1e-4 if dtype == "float32" else 2e-2


def verify(spec: ModelSpec, *, texts: Sequence[str] | None = None, tolerance: float | None = None) -> Report:
    """Raises ModelLoadError for an unusable spec and ReferenceMissing without sentence-transformers."""
    plan = plan_model(spec)  # fails in a second on a bad spec, before anything heavy loads
    if plan.task != "classify":
        _require_sentence_transformers()
    model = load_model(replace(spec, warmup_batch_size=1))
    try:
        info = model.info
        tol = default_tolerance(info.dtype) if tolerance is None else tolerance
        window = position_limit(plan.config)
        if info.task == "embed":
            return _verify_embed(model, str(plan.root), list(texts or verify_probes.TEXTS), tol, window)
        if info.task == "rerank":
            pairs = verify_probes.pairs_from_lines(texts) if texts else verify_probes.pairs()
            return _verify_rerank(model, str(plan.root), pairs, tol, window)
        folder = str(plan.st.transformer_folder)
        return _verify_classify(model, folder, list(texts or verify_probes.TEXTS), tol, window)
    finally:
        model.close()


def _verify_embed(model: Model, folder: str, texts: list[str], tol: float, window: int | None) -> Report:
    from sentence_transformers import SentenceTransformer

    info = model.info
    reference = SentenceTransformer(folder, device=info.device, model_kwargs=_FLOAT32)
    notes = _align_window(reference, window)
    # The default case passes no prompt to either side: each must pick the same default itself.
    cases: list[tuple[str | None, str | None]] = [("default" if info.default_prompt else None, None)]
    cases += [(name, text) for name, text in info.prompts if text]
    results = []
    for label, prompt in cases:
        expected = np.asarray(reference.encode(texts, prompt=prompt), dtype=np.float32)
        encoded = model.encode(texts, prompt=prompt)
        got = model.forward(model.collate(encoded)).vectors
        for text, enc, a, b in zip(texts, encoded, got, expected, strict=True):
            cosine = _cosine(a, b)
            results.append(ProbeResult(text, label, len(enc.ids), cosine, 1.0 - cosine <= tol))
    return Report(info, "SentenceTransformer.encode", "cosine", tol, tuple(results), notes)


def _verify_rerank(
    model: Model, folder: str, pairs: list[tuple[str, str]], tol: float, window: int | None
) -> Report:
    from sentence_transformers import CrossEncoder

    info = model.info
    reference = CrossEncoder(folder, device=info.device, model_kwargs=_FLOAT32)
    notes = _align_window(reference, window)
    expected = np.asarray(reference.predict(pairs), dtype=np.float32).reshape(len(pairs), -1)
    # One batch of every pair: mixed lengths padded together, as the batcher will run them.
    encoded: list[Encoded] = [e for query, doc in pairs for e in model.encode_pairs(query, [doc])]
    got = model.forward(model.collate(encoded)).vectors
    labels = [f"{q} | {d}" for q, d in pairs]
    return _score_report(info, "CrossEncoder.predict", labels, encoded, got, expected, tol, notes)


def _verify_classify(model: Model, folder: str, texts: list[str], tol: float, window: int | None) -> Report:
    import torch
    from transformers import pipeline

    info = model.info
    classifier: Any = pipeline(
        "text-classification", model=folder, top_k=None, device=info.device, dtype=torch.float32
    )
    limit = int(classifier.tokenizer.model_max_length)
    notes: tuple[str, ...] = ()
    if window is not None and limit > window:
        notes = (f"the pipeline's window of {limit} tokens exceeds the position table: compared at {window}",)
        limit = window
    outputs = classifier(texts, truncation=True, max_length=limit)
    order = {label: i for i, label in enumerate(info.labels)}
    expected = np.zeros((len(texts), len(info.labels)), dtype=np.float32)
    for row, scores in enumerate(outputs):
        for item in scores:
            expected[row, order[item["label"]]] = item["score"]
    encoded = model.encode(texts)
    got = model.forward(model.collate(encoded)).vectors
    return _score_report(
        info, "transformers text-classification pipeline", texts, encoded, got, expected, tol, notes
    )


def _score_report(
    info: ModelInfo,
    reference: str,
    labels: Sequence[str],
    encoded: Sequence[Encoded],
    got: npt.NDArray[np.float32],
    expected: npt.NDArray[np.float32],
    tol: float,
    notes: tuple[str, ...],
) -> Report:
    results = []
    for label, enc, a, b in zip(labels, encoded, got, expected, strict=True):
        diff = float(np.max(np.abs(a - b))) if a.shape == b.shape else math.inf
        results.append(ProbeResult(label, None, len(enc.ids), diff, diff <= tol))  # NaN fails too
    return Report(info, reference, "max |diff|", tol, tuple(results), notes)


def _align_window(reference: Any, window: int | None) -> tuple[str, ...]:
    """sentence-transformers caps its window at max_position_embeddings only, so a RoBERTa-family
    model without a declared length would index past its position table (514 rows, 512 usable)
    and fail on long probes. Compare at the usable window instead, and say so."""
    declared = reference.max_seq_length
    if window is None or declared is None or declared <= window:
        return ()
    reference.max_seq_length = window
    return (f"the reference's window of {declared} tokens exceeds the position table: compared at {window}",)


def _cosine(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    if a.shape != b.shape:
        return -math.inf
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    if denominator == 0.0:
        return 1.0 if not a.any() and not b.any() else 0.0
    return float(np.dot(a.astype(np.float64), b.astype(np.float64)) / denominator)


def _require_sentence_transformers() -> None:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError as exc:
        raise ReferenceMissing(f"convoy verify needs sentence-transformers: {INSTALL_HINT}") from exc
