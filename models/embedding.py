"""Feature extraction: mean pooling over the attention mask, then L2 normalisation."""

from __future__ import annotations

import torch

from models.encoder import HFEncoder


class EmbeddingModel(HFEncoder):
    """Sentence embeddings the way sentence-transformers computes them for MiniLM-style models."""

    def _rows(
        self, batch: dict[str, torch.Tensor], mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden = self._call(batch).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * weights).sum(dim=1)
        pooled = summed / weights.sum(dim=1).clamp(min=1e-9)
        # Normalise in float32: float16 norms of 384-d vectors lose digits.
        pooled = pooled.float()
        norms = pooled.norm(p=2, dim=1)
        return torch.nn.functional.normalize(pooled, p=2, dim=1), norms
