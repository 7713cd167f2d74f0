"""read_st_config(): a model folder's sentence-transformers files -> the pipeline they describe.

Pure file reading (no torch): modules.json and each module's config, sentence_bert_config.json,
config_sentence_transformers.json, and a cross-encoder's saved activation. What sentence-
transformers 6 does with each file is matched here, key by key, legacy spellings included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import ModelLoadError

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# Pre-v5 Pooling configs hold one boolean per mode; sentence-transformers concatenates the active
# ones in this order (sentence_transformer/modules/pooling.py, _LEGACY_POOLING_MODE_KWARGS).
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# The Transformer module's config, under the names older releases saved it as.
_TRANSFORMER_CONFIG_FILES = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)
# Dense's default when its saved activation is missing or not a torch class (sentence-
# transformers refuses to import anything else without trust_remote_code and falls back).
DEFAULT_DENSE_ACTIVATION = "torch.nn.modules.activation.Tanh"


@dataclass(frozen=True, slots=True)
class PoolingSpec:
    modes: tuple[str, ...]  # concatenated in this order
    include_prompt: bool = True

    @property
    def name(self) -> str:
        return "+".join(self.modes)


@dataclass(frozen=True, slots=True)
class DenseSpec:
    folder: Path  # config.json and model.safetensors / pytorch_model.bin
    in_features: int
    out_features: int
    bias: bool
    activation: str  # a dotted torch.nn class path, as sentence-transformers saves it
    use_residual: bool


@dataclass(frozen=True, slots=True)
class NormalizeSpec:
    """L2 normalisation of the sentence embedding (a Normalize module)."""


PostPooling = DenseSpec | NormalizeSpec


@dataclass(frozen=True, slots=True)
class STConfig:
    """The pipeline a model folder describes. Without sentence-transformers files every field
    keeps its default and `has_modules` is False: the caller picks the fallback pooling."""

    transformer_folder: Path  # where the network's config.json, weights and tokenizer live
    has_modules: bool = False  # modules.json exists
    max_seq_length: int | None = None
    do_lower_case: bool = False
    pooling: PoolingSpec | None = None  # None: no Pooling module
    after_pooling: tuple[PostPooling, ...] = ()  # Dense and Normalize modules, in order
    prompts: tuple[tuple[str, str], ...] = ()
    default_prompt_name: str | None = None
    truncate_dim: int | None = None
    cross_encoder: bool = False  # saved by sentence-transformers' CrossEncoder
    ce_activation: str | None = None  # the CrossEncoder's saved activation (a dotted torch path)

    @property
    def dense(self) -> tuple[DenseSpec, ...]:
        return tuple(step for step in self.after_pooling if isinstance(step, DenseSpec))

    @property
    def normalized(self) -> bool:
        """The output is unit-length: the last module is a Normalize."""
        return bool(self.after_pooling) and isinstance(self.after_pooling[-1], NormalizeSpec)


def read_st_config(root: Path) -> STConfig:
    """Describe the folder's pipeline; raises ModelLoadError on modules Convoy cannot run."""
    st_model = _read_json(root / "config_sentence_transformers.json") or {}
    hf_config = _read_json(root / "config.json") or {}
    prompts, default_prompt_name = _prompts(st_model)
    common: dict[str, Any] = {
        "prompts": prompts,
        "default_prompt_name": default_prompt_name,
        "truncate_dim": _positive_int(st_model.get("truncate_dim")),
        "cross_encoder": _is_cross_encoder(st_model, hf_config),
    }
    modules = _read_json(root / "modules.json")
    if modules is None:
        return STConfig(transformer_folder=root, ce_activation=_ce_activation({}, hf_config), **common)
    if not isinstance(modules, list):
        raise ModelLoadError(f"{root / 'modules.json'} is not a list of modules")

    transformer: Path | None = None
    pooling: PoolingSpec | None = None
    after_pooling: list[PostPooling] = []
    for entry in sorted(modules, key=lambda m: int(m.get("idx", 0))):
        kind = str(entry.get("type", "")).rsplit(".", 1)[-1]
        folder = _module_folder(root, str(entry.get("path", "")))
        if kind == "Transformer" and transformer is None and pooling is None:
            transformer = folder
        elif kind == "Pooling" and transformer is not None and pooling is None:
            pooling = read_pooling(_read_json(folder / "config.json") or {})
        elif kind == "Dense" and pooling is not None:
            after_pooling.append(_read_dense(folder))
        elif kind == "Normalize" and pooling is not None:
            _check_feature(folder, "Normalize")
            after_pooling.append(NormalizeSpec())
        elif kind == "Dropout":
            continue  # identity at inference
        else:
            raise ModelLoadError(
                f"unsupported sentence-transformers module {entry.get('type')!r} at position "
                f"{entry.get('idx')} of {root / 'modules.json'}"
            )
    if transformer is None:
        raise ModelLoadError(f"{root / 'modules.json'} has no Transformer module")
    transformer_config = _transformer_config(transformer)
    return STConfig(
        transformer_folder=transformer,
        has_modules=True,
        max_seq_length=_positive_int(transformer_config.get("max_seq_length")),
        do_lower_case=bool(transformer_config.get("do_lower_case", False)),
        pooling=pooling,
        after_pooling=tuple(after_pooling),
        ce_activation=_ce_activation(st_model, hf_config),
        **common,
    )


def read_pooling(config: dict[str, Any]) -> PoolingSpec:
    """A Pooling module's config.json, new (`pooling_mode`) or legacy (`pooling_mode_*`) keys."""
    mode = config.get("pooling_mode")
    if mode is None:
        active = tuple(m for key, m in _LEGACY_POOLING_KEYS.items() if config.get(key, False))
        modes = active or ("mean",)
    else:
        modes = (mode,) if isinstance(mode, str) else tuple(mode)
    return PoolingSpec(modes=parse_pooling(modes), include_prompt=bool(config.get("include_prompt", True)))


def parse_pooling(modes: str | tuple[str, ...]) -> tuple[str, ...]:
    """Pooling modes from a config or an operator ("cls", "cls+mean"); raises on unknown ones."""
    parts = tuple(p.strip() for p in modes.split("+")) if isinstance(modes, str) else modes
    unknown = [m for m in parts if m not in POOLING_MODES]
    if unknown or not parts:
        raise ModelLoadError(
            f"unknown pooling mode {'+'.join(parts)!r}; use one of {', '.join(POOLING_MODES)}"
        )
    return parts


def _prompts(st_model: dict[str, Any]) -> tuple[tuple[tuple[str, str], ...], str | None]:
    raw = st_model.get("prompts") or {}
    # sentence-transformers turns a saved null prompt into "" (BaseModel._validate_prompts).
    prompts = tuple((str(k), "" if v is None else str(v)) for k, v in raw.items())
    name = st_model.get("default_prompt_name")
    if name is not None and name not in dict(prompts):
        raise ModelLoadError(f"default_prompt_name {name!r} is not among the model's prompts")
    return prompts, None if name is None else str(name)


def _is_cross_encoder(st_model: dict[str, Any], hf_config: dict[str, Any]) -> bool:
    st_section = hf_config.get("sentence_transformers")
    return (
        st_model.get("model_type") == "CrossEncoder"
        or (isinstance(st_section, dict) and "activation_fn" in st_section)
        or hf_config.get("sbert_ce_default_activation_function") is not None
    )


def _ce_activation(st_model: dict[str, Any], hf_config: dict[str, Any]) -> str | None:
    """CrossEncoder's lookup order: config_sentence_transformers.json (v5+), then config.json's
    `sentence_transformers.activation_fn` (v4), then `sbert_ce_default_activation_function`."""
    if st_model.get("activation_fn"):
        return str(st_model["activation_fn"])
    st_section = hf_config.get("sentence_transformers")
    if isinstance(st_section, dict) and st_section.get("activation_fn"):
        return str(st_section["activation_fn"])
    legacy = hf_config.get("sbert_ce_default_activation_function")
    return str(legacy) if legacy else None


def _read_dense(folder: Path) -> DenseSpec:
    config = _read_json(folder / "config.json")
    if config is None:
        raise ModelLoadError(f"Dense module {folder} has no config.json")
    _check_feature(folder, "Dense", config)
    if config.get("module_output_name") not in (None, "sentence_embedding"):
        raise ModelLoadError(f"Dense module {folder} writes {config['module_output_name']!r}; unsupported")
    activation = str(config.get("activation_function") or DEFAULT_DENSE_ACTIVATION)
    return DenseSpec(
        folder=folder,
        in_features=int(config["in_features"]),
        out_features=int(config["out_features"]),
        bias=bool(config.get("bias", True)),
        activation=activation if activation.startswith("torch.") else DEFAULT_DENSE_ACTIVATION,
        use_residual=bool(config.get("use_residual", False)),
    )


def _check_feature(folder: Path, kind: str, config: dict[str, Any] | None = None) -> None:
    """Dense and Normalize may be aimed at token embeddings (multi-vector models): not ours."""
    config = config if config is not None else (_read_json(folder / "config.json") or {})
    if config.get("module_input_name", "sentence_embedding") != "sentence_embedding":
        raise ModelLoadError(f"{kind} module {folder} reads {config['module_input_name']!r}; unsupported")


def _transformer_config(folder: Path) -> dict[str, Any]:
    for name in _TRANSFORMER_CONFIG_FILES:
        config = _read_json(folder / name)
        if config:
            return dict(config)
    return {}


def _module_folder(root: Path, relative: str) -> Path:
    folder = (root / relative).resolve()
    if not folder.is_relative_to(root.resolve()):
        raise ModelLoadError(f"module path {relative!r} in {root / 'modules.json'} leaves the model folder")
    return root / relative if relative else root


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
