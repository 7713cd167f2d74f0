"""Shape model rows into the public prediction format, per chunk and for the whole document."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from server.batching.backend import BackendInfo, ItemResult
from server.chunking import Chunk
from server.remote.backends import JsonItemResult


def chunk_predictions(
    info: BackendInfo, chunks: Sequence[Chunk], results: Sequence[ItemResult]
) -> list[dict[str, Any]]:
    out = []
    for chunk, res in zip(chunks, results, strict=True):
        row: dict[str, Any] = {
            "index": chunk.index,
            "start": chunk.start,
            "end": chunk.end,
            "tokens": res.tokens,
        }
        row.update(result_output(info, res))
        out.append(row)
    return out


def result_output(info: BackendInfo, res: ItemResult) -> dict[str, Any]:
    """A chunk's task fields: `result` (the upstream's JSON) for task "json", else from its row."""
    if isinstance(res, JsonItemResult):
        return {"result": res.result}
    return task_output(info, res.vector)


def task_output(info: BackendInfo, vector: np.ndarray) -> dict[str, Any]:
    """`embedding` for embed models; `label`, `score`, `scores` for classifiers."""
    if info.task == "embed":
        return {"embedding": vector}  # orjson writes numpy arrays without a Python list
    best = int(np.argmax(vector))
    return {
        "label": info.labels[best],
        "score": float(vector[best]),
        "scores": {label: float(p) for label, p in zip(info.labels, vector, strict=True)},
    }


def aggregate(info: BackendInfo, results: Sequence[ItemResult]) -> dict[str, Any]:
    """Token-weighted mean of the chunk rows; embeddings are re-normalised to unit length.

    Arbitrary JSON (task "json") has no mean: its aggregate is empty.
    """
    if info.task == "json":
        return {}
    if len(results) == 1:  # the common case: the mean of one row is the row
        return task_output(info, results[0].vector)
    rows = np.stack([r.vector for r in results])
    weights = np.array([max(r.tokens, 1) for r in results], dtype=np.float32)
    mean = (rows * weights[:, None]).sum(axis=0) / weights.sum()
    if info.task == "embed":
        norm = float(np.linalg.norm(mean))
        return {"embedding": (mean / norm if norm > 0 else mean).astype(np.float32)}
    return task_output(info, mean.astype(np.float32))
