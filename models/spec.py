"""ModelSpec: what the operator asked for (source, task, device, dtype, pooling, prompts, ...)."""

from __future__ import annotations

from dataclasses import dataclass

from models.base import Task


@dataclass(frozen=True, slots=True)
class ModelSpec:
    source: str | None = None  # a folder or a hub id; None: the packaged all-MiniLM-L6-v2
    task: Task | None = None  # None: what the model's files say
    device: str = "auto"
    dtype: str = "auto"
    torch_threads: int | None = None
    warmup_batch_size: int = 32
    name: str | None = None
    pooling: str | None = None  # override of the model's pooling: "cls", "mean", "cls+mean", ...
    prompts: tuple[tuple[str, str], ...] = ()  # (name, text) added to the model's, winning on a clash
    default_prompt_name: str | None = None  # one of the prompts, applied when a request names none
    default_prompt: str | None = None  # or the text itself (wins over any name)
    matryoshka_dims: tuple[int, ...] = ()  # dimensions `dimensions` may cut to, when config.json omits them
