"""GatedModel: a deterministic fake Model whose forward waits on a gate for texts saying "gate"."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from models.base import BatchOutput, ModelInfo


class GatedModel:
    """Rows derive from the text; every text that reaches forward is recorded in `seen`."""

    def __init__(self, name: str = "gated") -> None:
        self.info = ModelInfo(name=name, task="embed", device="cpu", dtype="float32", max_tokens=512, dim=3)
        self.gate = threading.Event()
        self.gate.set()
        self.seen: list[str] = []
        self._lock = threading.Lock()

    def prepare(self, texts: Sequence[str]) -> list[str]:
        return list(texts)

    def forward(self, prepared: list[str]) -> BatchOutput:
        with self._lock:
            self.seen.extend(prepared)
        if any("gate" in t for t in prepared):
            self.gate.wait(30)
        rows = np.asarray([[len(t), len(t.split()), 1.0] for t in prepared], dtype=np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        return BatchOutput(vectors=rows, tokens=np.asarray(self.count_tokens(prepared), dtype=np.int64))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def close(self) -> None:
        self.gate.set()
