"""torch_activation(): a saved activation's dotted path -> the torch.nn module it names.

sentence-transformers saves Dense and CrossEncoder activations as class paths
("torch.nn.modules.activation.Tanh") and imports them only from torch unless the user trusts
remote code; Convoy never does, so anything outside torch.nn is refused here.
"""

from __future__ import annotations

import importlib

import torch

from models.errors import ModelLoadError


def torch_activation(path: str) -> torch.nn.Module:
    module_name, _, class_name = path.rpartition(".")
    if not module_name.startswith("torch.nn"):
        raise ModelLoadError(f"activation {path!r} is not a torch.nn class; Convoy runs only those")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"activation {path!r} does not exist in this torch") from exc
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ModelLoadError(f"activation {path!r} is not a torch.nn.Module class")
    module: torch.nn.Module = cls()
    return module


def activation_name(path: str) -> str:
    """ModelInfo's word for a class path: Identity -> "none", Sigmoid -> "sigmoid"."""
    name = path.rpartition(".")[2].lower()
    return "none" if name == "identity" else name
