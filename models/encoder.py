"""HFEncoder: tokenisation and device handling shared by the embedding and classification tasks."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from models.base import BatchOutput, ModelInfo, TokenIdError


class HFEncoder:
    """A transformers encoder behind the Model protocol; subclasses turn hidden states into rows."""

    def __init__(
        self,
        *,
        info: ModelInfo,
        network: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        device: torch.device,
    ) -> None:
        self.info = info
        self._network = network
        self._tokenizer = tokenizer
        self._device = device
        # Host->device copies from pinned memory can overlap with compute on CUDA.
        self._pin = device.type == "cuda"
        # Fast tokenizers are not safe to share across threads while one is mid-call.
        self._tok_lock = threading.Lock()

    def prepare(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        with self._tok_lock:
            encoded = self._tokenizer(
                list(texts),
                padding=True,
                truncation=True,
                max_length=self.info.max_tokens,
                return_tensors="pt",
            )
        batch = {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        if self._device.type != "cpu":
            batch = {
                k: (v.pin_memory() if self._pin else v).to(self._device, non_blocking=True)
                for k, v in batch.items()
            }
        return batch

    def forward(self, prepared: dict[str, torch.Tensor]) -> BatchOutput:
        with torch.inference_mode():
            mask = prepared["attention_mask"]
            rows, norms = self._rows(prepared, mask)
            tokens = mask.sum(dim=1)
            return BatchOutput(
                vectors=rows.float().cpu().numpy().astype(np.float32, copy=False),
                tokens=tokens.cpu().numpy().astype(np.int64, copy=False),
                norms=None if norms is None else norms.float().cpu().numpy().astype(np.float32, copy=False),
            )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        with self._tok_lock:
            ids = self._tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(x) for x in ids]

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        # The tokenizer decodes an unknown id to nothing, silently: check the range first.
        vocab = len(self._tokenizer)
        for i, row in enumerate(ids):
            for token_id in row:
                if not 0 <= token_id < vocab:
                    raise TokenIdError(i, token_id, vocab)
        with self._tok_lock:
            texts = self._tokenizer.batch_decode([list(r) for r in ids], skip_special_tokens=True)
        return [str(t) for t in texts]

    def close(self) -> None:
        self._network.to("cpu")
        del self._network
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    def _rows(
        self, batch: dict[str, torch.Tensor], mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One row per input, and the rows' norms before normalisation (None if not normalised)."""
        raise NotImplementedError

    def _call(self, batch: dict[str, torch.Tensor]) -> Any:
        return self._network(**batch)
