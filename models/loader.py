"""load_model() / load_encoder(): a ModelSpec -> a warmed-up Model on a device, or its tokeniser alone."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from models.base import Model, ModelInfo, Task
from models.classification import ClassificationModel, head_activation
from models.dense import build_dense
from models.devices import pick_device, pick_dtype
from models.embedding import NORMALIZE, EmbeddingModel, Step
from models.errors import ModelLoadError
from models.hub import default_model_path
from models.limits import matryoshka_dims, max_tokens
from models.plan import NO_ST_FILES, ModelPlan, infer_task, plan_model
from models.spec import ModelSpec
from models.st_config import DenseSpec
from models.tokenization import InputEncoder

__all__ = [
    "ModelLoadError",
    "ModelSpec",
    "check_spec",
    "default_model_path",
    "infer_task",
    "load_encoder",
    "load_model",
    "pick_device",
    "pick_dtype",
]

log = logging.getLogger("convoy.models")

_WARMUP_TEXT = "Convoy warms the model up with a sentence of ordinary length."


def check_spec(spec: ModelSpec) -> tuple[str, Task, torch.device, torch.dtype]:
    """Validate a spec cheaply (config files only, no weights): folder, task, device, dtype."""
    plan = plan_model(spec)
    device = pick_device(spec.device)
    return str(plan.root), plan.task, device, pick_dtype(spec.dtype, device)


def load_encoder(spec: ModelSpec) -> InputEncoder:
    """The model's tokenisation without its network: for processes that only encode."""
    return _build_encoder(plan_model(spec))


def load_model(spec: ModelSpec) -> Model:
    """Load, move to the device, warm up. Blocking: call it off the event loop."""
    plan = plan_model(spec)
    device = pick_device(spec.device)
    dtype = pick_dtype(spec.dtype, device)
    if device.type == "cpu":
        torch.set_num_threads(spec.torch_threads or len(os.sched_getaffinity(0)))
    if plan.pooling_source == NO_ST_FILES:
        log.warning(
            "%s has no sentence-transformers files: %s pooling, not normalised (their default)",
            plan.root,
            plan.pooling.name if plan.pooling else "",
        )
    encoder = _build_encoder(plan)
    parts = _Parts(_load_network(plan, dtype).to(device).eval(), encoder, device, dtype)
    model: Model
    if plan.task == "embed":
        model = _embedding_model(plan, spec, parts)
    else:
        model = _classification_model(plan, spec, parts)
    _warm_up(model, spec.warmup_batch_size)
    info = model.info
    log.info(
        "loaded %s (%s) on %s as %s, max %d tokens, %s",
        info.name,
        info.task,
        info.device,
        info.dtype,
        info.max_tokens,
        f"pooling {info.pooling} ({info.pooling_source})" if info.task == "embed" else info.activation,
    )
    return model


def _build_encoder(plan: ModelPlan) -> InputEncoder:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(plan.st.transformer_folder))
    except Exception as exc:
        raise ModelLoadError(f"cannot load the tokenizer of {plan.name!r}: {exc}".splitlines()[0]) from exc
    limit = max_tokens(
        plan.config,
        st_max_seq_length=plan.st.max_seq_length,
        tokenizer_max_length=getattr(tokenizer, "model_max_length", None),
    )
    return InputEncoder(
        tokenizer,
        max_tokens=limit,
        do_lower_case=plan.st.do_lower_case,
        include_prompt=plan.pooling.include_prompt if plan.pooling else True,
        default_prompt=plan.default_prompt,
    )


def _load_network(plan: ModelPlan, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import AutoModel, AutoModelForSequenceClassification

    auto_cls: Any = AutoModel if plan.task == "embed" else AutoModelForSequenceClassification
    try:
        network: torch.nn.Module = auto_cls.from_pretrained(str(plan.st.transformer_folder), dtype=dtype)
    except Exception as exc:
        raise ModelLoadError(f"cannot load model {plan.name!r}: {exc}".splitlines()[0]) from exc
    return network


@dataclass(frozen=True, slots=True)
class _Parts:
    """What every task's model is built from."""

    network: torch.nn.Module
    encoder: InputEncoder
    device: torch.device
    dtype: torch.dtype


def _info(plan: ModelPlan, parts: _Parts, **fields: Any) -> ModelInfo:
    return ModelInfo(
        name=plan.name,
        task=plan.task,
        device=str(parts.device),
        dtype=str(parts.dtype).removeprefix("torch."),
        max_tokens=parts.encoder.max_tokens,
        special_tokens=parts.encoder.special_tokens,
        prompts=plan.prompts,
        default_prompt_name=plan.default_prompt_name,
        default_prompt=plan.default_prompt,
        do_lower_case=plan.st.do_lower_case,
        **fields,
    )


def _embedding_model(plan: ModelPlan, spec: ModelSpec, parts: _Parts) -> EmbeddingModel:
    assert plan.pooling is not None  # plan_model gives every embedding model a pooling
    dim = int(plan.config.hidden_size) * len(plan.pooling.modes)
    steps: list[Step] = []
    for step in plan.st.after_pooling:
        if isinstance(step, DenseSpec):
            if step.in_features != dim:
                raise ModelLoadError(
                    f"{plan.pooling.name} pooling gives {dim} dimensions but the Dense module "
                    f"{step.folder.name} reads {step.in_features}"
                )
            steps.extend(build_dense((step,), parts.device))
            dim = step.out_features
        else:
            steps.append(NORMALIZE)
    truncate_dim = plan.st.truncate_dim if plan.st.truncate_dim and plan.st.truncate_dim < dim else None
    dim = truncate_dim or dim
    info = _info(
        plan,
        parts,
        dim=dim,
        pooling=plan.pooling.name,
        pooling_source=plan.pooling_source,
        normalized=plan.st.normalized and truncate_dim is None,
        dense_layers=len(plan.st.dense),
        matryoshka_dims=matryoshka_dims(plan.config, dim, spec.matryoshka_dims),
    )
    return EmbeddingModel(
        info=info,
        network=parts.network,
        encoder=parts.encoder,
        device=parts.device,
        modes=plan.pooling.modes,
        steps=steps,
        truncate_dim=truncate_dim,
    )


def _classification_model(plan: ModelPlan, spec: ModelSpec, parts: _Parts) -> ClassificationModel:
    config = plan.config
    activation = head_activation(plan.task, config, plan.st.ce_activation)
    if spec.matryoshka_dims:
        raise ModelLoadError("matryoshka dimensions apply to embedding models only")
    info = _info(
        plan,
        parts,
        dim=int(config.num_labels),
        labels=tuple(str(config.id2label[i]) for i in range(config.num_labels)),
        activation=activation,
    )
    return ClassificationModel(
        info=info, network=parts.network, encoder=parts.encoder, device=parts.device, activation=activation
    )


def _warm_up(model: Model, batch_size: int) -> None:
    for n in sorted({1, max(1, batch_size)}):
        model.forward(model.collate(model.encode([_WARMUP_TEXT] * n)))
