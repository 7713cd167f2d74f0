"""DenseLayer: a sentence-transformers Dense module (linear, activation, optional residual)."""

from __future__ import annotations

import torch

from models.activations import torch_activation
from models.errors import ModelLoadError
from models.st_config import DenseSpec


class DenseLayer(torch.nn.Module):
    """activation(linear(x)) [+ x or residual(x)], as sentence-transformers' Dense.forward.

    Kept in float32 whatever the network's dtype: it reads the float32 pooled vector.
    """

    def __init__(self, spec: DenseSpec) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(spec.in_features, spec.out_features, bias=spec.bias)
        # Named as sentence-transformers names it, so a stateful activation (PReLU) loads its weights.
        self.activation_function = torch_activation(spec.activation)
        self.use_residual = spec.use_residual
        self.residual: torch.nn.Linear | None = None
        if spec.use_residual and spec.in_features != spec.out_features:
            self.residual = torch.nn.Linear(spec.in_features, spec.out_features, bias=False)
        self._load(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.activation_function(self.linear(x))
        if self.use_residual:
            out = out + (x if self.residual is None else self.residual(x))
        return out

    def _load(self, spec: DenseSpec) -> None:
        safetensors = spec.folder / "model.safetensors"
        if safetensors.is_file():
            from safetensors.torch import load_file

            weights = load_file(str(safetensors))
        elif (spec.folder / "pytorch_model.bin").is_file():
            weights = torch.load(spec.folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
        else:
            raise ModelLoadError(f"Dense module {spec.folder} has no model.safetensors or pytorch_model.bin")
        try:
            self.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
        except RuntimeError as exc:
            raise ModelLoadError(f"Dense module {spec.folder}: {str(exc).splitlines()[0]}") from exc


def build_dense(specs: tuple[DenseSpec, ...], device: torch.device) -> list[DenseLayer]:
    return [DenseLayer(spec).to(device).eval() for spec in specs]
