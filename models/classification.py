"""Sequence classification: softmax over the logits; labels come from the config's id2label."""

from __future__ import annotations

import torch

from models.encoder import HFEncoder


class ClassificationModel(HFEncoder):
    """Class probabilities per input, ordered as `info.labels`."""

    def _rows(
        self, batch: dict[str, torch.Tensor], mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self._call(batch).logits
        return torch.softmax(logits.float(), dim=-1), None
