"""HFEncoder: a transformers network behind the Model protocol; subclasses turn outputs into rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from models.base import BatchOutput, Encoded, ModelInfo, TokenSpan
from models.collate import pad
from models.tokenization import InputEncoder


@dataclass(frozen=True, slots=True)
class Collated:
    """A padded batch on the model's device, and what forward needs besides the network inputs."""

    inputs: dict[str, torch.Tensor]  # input_ids, attention_mask[, token_type_ids]
    prompt_lengths: torch.Tensor | None  # leading tokens pooling skips, per input (None: none)
    tokens: npt.NDArray[np.int64]  # len(ids) per input, on the host


class HFEncoder:
    """Tokenisation is the InputEncoder's; this class adds collate (pad, move to the device) and
    forward (network + the subclass's `_rows`). Which thread calls what: see models.base.Model."""

    def __init__(
        self, *, info: ModelInfo, network: torch.nn.Module, encoder: InputEncoder, device: torch.device
    ) -> None:
        self.info = info
        self.encoder = encoder
        self._network = network
        self._device = device
        # Pinned host memory lets the copy run without blocking the tokenise thread. It is queued
        # on the device's current stream, so it runs in order with (not beside) the forward pass
        # already queued there: overlapping the two would take a side stream and an event.
        self._pin = device.type == "cuda"

    def encode(
        self, texts: Sequence[str], *, prompt: str | None = None, truncate: bool = True
    ) -> list[Encoded]:
        return self.encoder.encode(texts, prompt=prompt, truncate=truncate)

    def encode_pairs(
        self, query: str, documents: Sequence[str], *, prompt: str | None = None, truncate: bool = True
    ) -> list[Encoded]:
        return self.encoder.encode_pairs(query, documents, prompt=prompt, truncate=truncate)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.encoder.count_tokens(texts)

    def prompt_tokens(self, prompt: str) -> int:
        return self.encoder.prompt_tokens(prompt)

    def tokenize(
        self, texts: Sequence[str], *, add_special_tokens: bool = True, prompt: str | None = None
    ) -> list[list[TokenSpan]]:
        return self.encoder.tokenize(texts, add_special_tokens=add_special_tokens, prompt=prompt)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return self.encoder.decode(ids)

    def collate(self, batch: Sequence[Encoded]) -> Collated:
        padded = pad(batch, self.encoder.pad_id, type_ids=self.encoder.takes_type_ids)
        block = torch.from_numpy(padded.block)
        prompt_lengths = None if padded.prompt_lengths is None else torch.from_numpy(padded.prompt_lengths)
        if self._device.type != "cpu":
            block = self._to_device(block)
            prompt_lengths = None if prompt_lengths is None else self._to_device(prompt_lengths)
        inputs = {"input_ids": block[0], "attention_mask": block[1]}
        if len(block) > 2:
            inputs["token_type_ids"] = block[2]
        return Collated(inputs, prompt_lengths, padded.lengths)

    def prepare(self, texts: Sequence[str]) -> Collated:
        return self.collate(self.encode(texts))

    def forward(self, collated: Collated) -> BatchOutput:
        with torch.inference_mode():
            return self._rows(collated)

    def close(self) -> None:
        self._network.to("cpu")
        del self._network
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    def _rows(self, batch: Collated) -> BatchOutput:
        raise NotImplementedError

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return (tensor.pin_memory() if self._pin else tensor).to(self._device, non_blocking=True)


def host(tensor: torch.Tensor) -> npt.NDArray[np.float32]:
    """A float tensor as a float32 numpy array on the host."""
    return tensor.float().cpu().numpy().astype(np.float32, copy=False)
