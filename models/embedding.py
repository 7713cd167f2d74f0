"""Sentence embeddings: pooling, then the model's Dense and Normalize modules in their order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from models.base import BatchOutput, ModelInfo
from models.dense import DenseLayer
from models.encoder import Collated, HFEncoder, host
from models.pooling import pool, pooling_mask
from models.tokenization import InputEncoder

NORMALIZE: Literal["normalize"] = "normalize"
Step = DenseLayer | Literal["normalize"]


class EmbeddingModel(HFEncoder):
    """What SentenceTransformer.encode returns for the same folder; float32 after the network."""

    def __init__(
        self,
        *,
        info: ModelInfo,
        network: torch.nn.Module,
        encoder: InputEncoder,
        device: torch.device,
        modes: Sequence[str],
        steps: Sequence[Step] = (),
        truncate_dim: int | None = None,
    ) -> None:
        super().__init__(info=info, network=network, encoder=encoder, device=device)
        self._modes = tuple(modes)
        self._steps = tuple(steps)
        self._truncate_dim = truncate_dim

    def _rows(self, batch: Collated) -> BatchOutput:
        hidden = self._network(**batch.inputs).last_hidden_state
        rows = pool(hidden, pooling_mask(batch.inputs["attention_mask"], batch.prompt_lengths), self._modes)
        norms: torch.Tensor | None = None
        for step in self._steps:
            if isinstance(step, DenseLayer):
                rows = step(rows)
                norms = None  # a Dense after Normalize: the norm no longer recovers the raw row
            else:
                norms = rows.norm(p=2, dim=-1)
                rows = torch.nn.functional.normalize(rows, p=2, dim=-1)
        if self._truncate_dim is not None:
            # config_sentence_transformers.json's truncate_dim: cut after Normalize, as encode() does.
            rows, norms = rows[:, : self._truncate_dim], None
        return BatchOutput(
            vectors=host(rows),
            tokens=batch.tokens,
            norms=None if norms is None else host(norms),
        )
