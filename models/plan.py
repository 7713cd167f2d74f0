"""plan_model(): a ModelSpec and the model's own files -> what to load and how to run it (no weights)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.base import Task
from models.errors import ModelLoadError
from models.hub import default_model_path, resolve_source
from models.spec import ModelSpec
from models.st_config import PoolingSpec, STConfig, parse_pooling, read_st_config

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
NO_ST_FILES = "default (no sentence-transformers files)"


@dataclass(frozen=True, slots=True)
class ModelPlan:
    name: str
    root: Path  # the model folder (a hub id resolved to its snapshot)
    st: STConfig
    config: Any  # the network's transformers PretrainedConfig
    task: Task
    pooling: PoolingSpec | None  # embed only
    pooling_source: str
    prompts: tuple[tuple[str, str], ...]
    default_prompt_name: str | None
    default_prompt: str | None


def plan_model(spec: ModelSpec) -> ModelPlan:
    """Cheap (config files only): raises ModelLoadError with one line for anything unusable."""
    root = resolve_source(spec.source) if spec.source else default_model_path()
    st = read_st_config(root)
    config = _network_config(st.transformer_folder)
    task = spec.task or infer_task(config, st)
    pooling, pooling_source = choose_pooling(task, st, config, spec.pooling)
    prompts, default_name, default_prompt = merge_prompts(st, spec)
    return ModelPlan(
        name=spec.name or display_name(spec.source),
        root=root,
        st=st,
        config=config,
        task=task,
        pooling=pooling,
        pooling_source=pooling_source,
        prompts=prompts,
        default_prompt_name=default_name,
        default_prompt=default_prompt,
    )


def infer_task(config: Any, st: STConfig) -> Task:
    """rerank when unambiguous: a CrossEncoder save, or a sequence classifier with one label."""
    archs = getattr(config, "architectures", None) or []
    classifier = st.cross_encoder or any(a.endswith("ForSequenceClassification") for a in archs)
    if not classifier:
        return "embed"
    return "rerank" if int(config.num_labels) == 1 else "classify"


def choose_pooling(
    task: Task, st: STConfig, config: Any, override: str | None
) -> tuple[PoolingSpec | None, str]:
    if task != "embed":
        if override:
            raise ModelLoadError(f"a pooling mode applies to embedding models, not to a {task} model")
        return None, ""
    if override:
        include_prompt = st.pooling.include_prompt if st.pooling else True
        return PoolingSpec(parse_pooling(override), include_prompt), "override"
    if st.pooling is not None:
        return st.pooling, "modules.json"
    if st.has_modules:
        raise ModelLoadError(
            f"{st.transformer_folder} has modules.json but no Pooling module; pass a pooling"
        )
    # sentence-transformers' own fallback (SentenceTransformer._load_default_modules): mean pooling,
    # last-token for causal language models, and no Normalize.
    archs = getattr(config, "architectures", None) or []
    causal = bool(archs) and archs[0].endswith("ForCausalLM") and getattr(config, "is_causal", True)
    return PoolingSpec(("lasttoken",) if causal else ("mean",)), NO_ST_FILES


def merge_prompts(
    st: STConfig, spec: ModelSpec
) -> tuple[tuple[tuple[str, str], ...], str | None, str | None]:
    """The model's prompts plus the operator's; the default prompt by name or by text."""
    prompts = dict(st.prompts)
    prompts.update(spec.prompts)
    if spec.default_prompt is not None:
        return tuple(prompts.items()), spec.default_prompt_name, spec.default_prompt or None
    name = spec.default_prompt_name or st.default_prompt_name
    if name is not None and name not in prompts:
        raise ModelLoadError(
            f"default prompt {name!r} is not one of the prompts ({', '.join(prompts) or 'none'})"
        )
    return tuple(prompts.items()), name, (prompts[name] or None) if name is not None else None


def display_name(source: str | None) -> str:
    if not source:
        return DEFAULT_MODEL_NAME
    path = Path(source)
    return path.name if path.exists() else source


def _network_config(folder: Path) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(folder))
    except Exception as exc:  # transformers raises OSError/ValueError/... for unusable folders
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load model {str(folder)!r}: {first_line}") from exc
