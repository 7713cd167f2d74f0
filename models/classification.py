"""Sequence classification and reranking: logits -> scores with the activation the model means."""

from __future__ import annotations

from typing import Any, Literal

import torch

from models.activations import activation_name
from models.base import BatchOutput, ModelInfo, Task
from models.encoder import Collated, HFEncoder, host
from models.errors import ModelLoadError
from models.tokenization import InputEncoder

HeadActivation = Literal["softmax", "sigmoid", "none"]
# The CrossEncoder activations Convoy runs, by ModelInfo's name for them.
_CE_ACTIVATIONS: dict[str, HeadActivation] = {"sigmoid": "sigmoid", "softmax": "softmax", "none": "none"}


def head_activation(task: Task, config: Any, ce_activation: str | None) -> HeadActivation:
    """The activation that turns this head's logits into the scores the model means.

    rerank, as CrossEncoder.predict: the activation the CrossEncoder saved, else sigmoid for one
    logit (identity for several). classify, as transformers' text-classification pipeline: none
    for regression, sigmoid per label for multi-label heads and one-logit heads, else softmax.
    """
    num_labels = int(config.num_labels)
    if task == "rerank":
        if ce_activation is None:
            return "sigmoid" if num_labels == 1 else "none"
        known = _CE_ACTIVATIONS.get(activation_name(ce_activation))
        if known is None:
            raise ModelLoadError(f"cross-encoder activation {ce_activation!r} is not supported")
        return known
    problem = getattr(config, "problem_type", None)
    if problem == "regression":
        return "none"
    if problem == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    return "softmax"


def activate(logits: torch.Tensor, activation: HeadActivation) -> torch.Tensor:
    if activation == "softmax":
        return torch.softmax(logits, dim=-1)
    if activation == "sigmoid":
        return torch.sigmoid(logits)
    return logits


class ClassificationModel(HFEncoder):
    """One row of scores per input (ordered as `info.labels`), and the logits in `raw`.

    A rerank model is the one-logit case: each row holds one relevance score for its pair.
    """

    def __init__(
        self,
        *,
        info: ModelInfo,
        network: torch.nn.Module,
        encoder: InputEncoder,
        device: torch.device,
        activation: HeadActivation,
    ) -> None:
        super().__init__(info=info, network=network, encoder=encoder, device=device)
        self._activation = activation

    def _rows(self, batch: Collated) -> BatchOutput:
        # Logits in float32 before the activation: half-precision ties and saturation otherwise.
        logits = self._network(**batch.inputs).logits.float()
        return BatchOutput(
            vectors=host(activate(logits, self._activation)), tokens=batch.tokens, raw=host(logits)
        )
