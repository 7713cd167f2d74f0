"""Several models in one process: which models to serve (flags or a TOML file), each as its own Settings.

Every served model gets a Settings of its own (source, name, task, device, dtype and batching
knobs filled in), so the model factory and the batcher of each model read the same fields as
in the single-model case.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.config import DType, Settings, Task

# NAME=SOURCE on the command line; a path (/x, ./x) or hub id (org/x) never matches as a whole name.
_NAMED_SOURCE_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)=(?P<source>.+)$")


class ModelsFileError(ValueError):
    """The models file cannot be used; the message is one line meant for the operator."""


class ModelEntry(BaseModel):
    """One `[[models]]` table of a models file; unset keys take the values of the flags."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, min_length=1, description="Name clients send as `model`.")
    source: str | None = Field(default=None, description="Local path or hub id; unset: the packaged MiniLM.")
    task: Task | None = None
    device: str | None = None
    dtype: DType | None = None
    torch_threads: int | None = None
    max_batch_size: int | None = None
    max_batch_tokens: int | None = None
    max_wait_ms: float | None = None
    max_queue: int | None = None
    pooling: str | None = None
    default_prompt_name: str | None = None
    default_prompt: str | None = None
    matryoshka_dims: list[int] | None = None


def parse_named_source(text: str) -> ModelEntry:
    """`NAME=SOURCE` or a bare `SOURCE`, as given to --model / --models."""
    match = _NAMED_SOURCE_RE.match(text)
    if match and not Path(text).exists():
        return ModelEntry(name=match["name"], source=match["source"])
    return ModelEntry(source=text)


def load_models_file(path: Path) -> list[ModelEntry]:
    """Read `[[models]]` tables from a TOML file (blocking file I/O: call it before serving)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelsFileError(f"cannot read models file {str(path)!r}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ModelsFileError(f"models file {str(path)!r} is not valid TOML: {exc}") from exc
    tables = data.get("models")
    unknown = sorted(set(data) - {"models"})
    if unknown or not isinstance(tables, list) or not tables:
        raise ModelsFileError(
            f"models file {str(path)!r} must hold one or more [[models]] tables and nothing else"
        )
    entries = []
    for i, table in enumerate(tables):
        try:
            entry = ModelEntry.model_validate(table)
        except ValidationError as exc:
            raise ModelsFileError(_entry_message(path, i, exc)) from None
        # A relative source next to the file wins over the same name as a hub id or from the cwd.
        if entry.source and (path.parent / entry.source).exists():
            entry = entry.model_copy(update={"source": str(path.parent / entry.source)})
        entries.append(entry)
    return entries


def served_models(settings: Settings) -> list[Settings]:
    """One Settings per model to serve, in the order given: --model, then --models, then the file.

    Without --model, the packaged MiniLM is served only when nothing else is asked for.
    """
    entries: list[ModelEntry] = []
    if settings.model is not None:
        entries.append(parse_named_source(settings.model))
    entries.extend(parse_named_source(text) for text in settings.models)
    if settings.models_file is not None:
        entries.extend(load_models_file(settings.models_file))
    if not entries:
        return [settings]
    if settings.model_name is not None:
        if settings.model is None:
            raise ModelsFileError("--model-name names --model, but no --model was given")
        entries[0] = entries[0].model_copy(update={"name": settings.model_name})
    names = [e.name for e in entries if e.name is not None]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ModelsFileError(f"model names must be distinct; given twice: {', '.join(duplicates)}")
    return [settings_for(settings, entry) for entry in entries]


def settings_for(settings: Settings, entry: ModelEntry) -> Settings:
    """The Settings one model is loaded and batched with: the flags, overridden by its entry."""
    overrides = entry.model_dump(exclude_none=True, exclude={"name", "source"})
    values: dict[str, Any] = {
        **settings.model_dump(),
        **overrides,
        "model": entry.source,
        "model_name": entry.name,
        "models": [],
        "models_file": None,
    }
    try:
        # Every field is given, so CONVOY_* env vars cannot override the entry; ranges are checked.
        return Settings.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        label = entry.name or entry.source or "the packaged model"
        raise ModelsFileError(f"model {label!r}: {field}: {err['msg']}") from None


def _entry_message(path: Path, index: int, exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "table"
    return f"models file {str(path)!r}, model #{index + 1}: {field}: {err['msg']}"
