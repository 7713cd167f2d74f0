"""FakeModel: a deterministic, gated stand-in for a Model, for batcher, streaming and fault tests."""

from __future__ import annotations

import re
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from models.base import BatchOutput, Encoded, ModelInfo, Task, TokenSpan

Texts = Callable[[Sequence[str]], bool]


def fake_vector(text: str) -> np.ndarray:
    """The row FakeModel returns for `text`: derived from the text so mix-ups are caught."""
    return np.array([len(text), zlib.crc32(text.encode()) % 100_003], dtype=np.float32)


def mentions(word: str) -> Texts:
    """A batch predicate: true when any text contains `word` (e.g. gate only batches saying "gate")."""
    return lambda texts: any(word in t for t in texts)


class FakeModel:
    """Records every batch; can block forward on a gate and raise for chosen inputs.

    `gate`: forward waits on it (so submissions pile up while the model is "busy"); with
    `gate_if`, only batches it returns True for wait.
    `fail_if`: forward raises `error()` when it returns True for the batch (e.g. a marked text
    inside, or a batch above some size to mimic out-of-memory; a CUDA-like message for a
    failed device).
    `seconds_per_batch`: compute cost of one forward pass, whatever its size (like a GPU below
    saturation), so capacity is known: max_batch_size / seconds_per_batch chunks per second;
    `seconds_per_token` adds a cost per padded token (words here), like a saturated device.
    `vector_for`: the row of one text (default `fake_vector`).
    `seen` lists every text that reached forward (before the gate); `batches` the batches that
    completed.
    """

    def __init__(
        self,
        *,
        name: str = "fake",
        gate: threading.Event | None = None,
        gate_if: Texts | None = None,
        fail_if: Texts | None = None,
        error: Callable[[], Exception] = lambda: RuntimeError("injected failure"),
        seconds_per_batch: float = 0.0,
        seconds_per_token: float = 0.0,
        vector_for: Callable[[str], np.ndarray] = fake_vector,
        task: Task = "embed",
        max_tokens: int = 512,
    ) -> None:
        self.info = ModelInfo(
            name=name, task=task, device="cpu", dtype="float32", max_tokens=max_tokens, dim=2
        )
        self.gate = gate
        self.gate_if = gate_if
        self.fail_if = fail_if
        self.error = error
        self.seconds_per_batch = seconds_per_batch
        self.seconds_per_token = seconds_per_token
        self.vector_for = vector_for
        self.batches: list[list[str]] = []
        self.seen: list[str] = []
        self._seen_lock = threading.Lock()
        self.forward_started = threading.Event()
        self.closed = False

    # Tokens are the text's UTF-8 bytes, so collate can give forward the very texts back (a
    # prompt prepended; a pair as query, NUL, document): rows derive from what was encoded.
    def encode(
        self, texts: Sequence[str], *, prompt: str | None = None, truncate: bool = True
    ) -> list[Encoded]:
        return [Encoded(list(((prompt or "") + t).encode())) for t in texts]

    def encode_pairs(
        self, query: str, documents: Sequence[str], *, prompt: str | None = None, truncate: bool = True
    ) -> list[Encoded]:
        head = list(((prompt or "") + query).encode())
        return [Encoded([*head, 0, *d.encode()]) for d in documents]

    def collate(self, batch: Sequence[Encoded]) -> list[str]:
        return [bytes(e.ids).decode().replace("\0", " | ") for e in batch]

    def prepare(self, texts: Sequence[str]) -> list[str]:
        return self.collate(self.encode(texts))

    def forward(self, prepared: list[str]) -> BatchOutput:
        with self._seen_lock:
            self.seen.extend(prepared)
        self.forward_started.set()
        gated = self.gate is not None and (self.gate_if is None or self.gate_if(prepared))
        if gated and self.gate is not None and not self.gate.wait(timeout=30):
            raise TimeoutError("test gate never opened")
        if self.fail_if is not None and self.fail_if(prepared):
            raise self.error()
        tokens = np.array(self.count_tokens(prepared), dtype=np.int64)
        cost = self.seconds_per_batch + self.seconds_per_token * len(prepared) * int(tokens.max())
        if cost:
            time.sleep(cost)  # simulated compute on the model thread
        self.batches.append(list(prepared))
        return BatchOutput(vectors=np.stack([self.vector_for(t) for t in prepared]), tokens=tokens)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def prompt_tokens(self, prompt: str) -> int:
        return len(prompt.split())

    def tokenize(
        self, texts: Sequence[str], *, add_special_tokens: bool = True, prompt: str | None = None
    ) -> list[list[TokenSpan]]:
        """One token per word, with its offsets in the (prompted) text."""
        out = []
        for text in texts:
            whole = (prompt or "") + text
            out.append(
                [
                    TokenSpan(len(m.group()), m.group(), False, m.start(), m.end())
                    for m in re.finditer(r"\S+", whole)
                ]
            )
        return out

    def close(self) -> None:
        self.closed = True
        if self.gate is not None:
            self.gate.set()  # never leave the model thread blocked once the server stops

    @property
    def batch_sizes(self) -> list[int]:
        return [len(b) for b in self.batches]


def record_tokenised(model: Any) -> list[str]:
    """Every text `model.encode` tokenises from now on, in order (a fake or a real model)."""
    tokenised: list[str] = []
    encode = model.encode

    def recording_encode(texts: Sequence[str], **kw: Any) -> list[Encoded]:
        tokenised.extend(texts)
        return encode(texts, **kw)

    model.encode = recording_encode
    return tokenised
