"""What /models and /info say a model computes: pooling, normalisation, prompts, activation, sizes."""

from __future__ import annotations

from typing import Any

from server.batching.backend import BackendInfo


def model_math(info: BackendInfo) -> dict[str, Any]:
    """The fields of ModelMath that apply to this model's task (the rest stay absent)."""
    if info.task == "embed":
        return {
            "pooling": info.pooling or None,
            "pooling_source": info.pooling_source or None,
            "normalized": info.normalized,
            "dense_layers": info.dense_layers,
            "prompts": dict(info.prompts) or None,
            "default_prompt_name": info.default_prompt_name,
            "default_prompt": info.default_prompt,
            "matryoshka_dimensions": list(info.matryoshka_dims) or None,
        }
    if info.task in ("classify", "rerank"):
        return {
            "activation": info.activation or None,
            "prompts": dict(info.prompts) or None,
            "default_prompt_name": info.default_prompt_name,
            "default_prompt": info.default_prompt,
        }
    return {}


def tei_pooling(pooling: str) -> str:
    """TEI's name of a pooling mode (it says last_token where sentence-transformers says lasttoken)."""
    return pooling.replace("lasttoken", "last_token")
