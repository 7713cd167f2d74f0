"""resolve_source(): folders as they are, hub ids from the Hugging Face cache, downloads only online."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
from huggingface_hub import constants

from models.errors import ModelLoadError
from models.hub import SKIPPED_FILES, resolve_source

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cached_snapshot(cache: Path, repo_id: str) -> Path:
    """The layout huggingface_hub's cache keeps: refs/main names the snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    return snapshot


def test_a_local_folder_is_used_as_is(tmp_path: Path) -> None:
    assert resolve_source(str(tmp_path)) == tmp_path


def test_a_hub_id_resolves_to_its_cached_snapshot_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All of the model's files (sentence_bert_config.json too) are then read from one folder."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    snapshot = cached_snapshot(tmp_path, "acme/encoder")
    resolved = resolve_source("acme/encoder", cache_dir=tmp_path)
    assert resolved.resolve() == snapshot.resolve()
    assert (resolved / "sentence_bert_config.json").is_file()


def test_offline_a_model_missing_from_the_cache_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        resolve_source("acme/missing", cache_dir=tmp_path)


def test_online_a_model_missing_from_the_cache_is_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    real = huggingface_hub.snapshot_download

    def recording(repo_id: str, **kwargs: Any) -> str:
        calls.append(kwargs)
        if kwargs.get("local_files_only"):
            return str(real(repo_id, **kwargs))  # the real cache lookup: raises, nothing cached
        return str(tmp_path / "downloaded")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", recording)
    assert resolve_source("acme/fresh", cache_dir=tmp_path) == tmp_path / "downloaded"
    assert [c.get("local_files_only", False) for c in calls] == [True, False]
    assert calls[1]["ignore_patterns"] == list(SKIPPED_FILES)  # no ONNX/OpenVINO/TF copies


@pytest.mark.parametrize(
    ("source", "needle"),
    [("/no/such/folder", "no such folder"), ("not a repo id!!", "neither a folder nor a valid hub id")],
)
def test_unusable_sources_fail_with_one_line(source: str, needle: str) -> None:
    with pytest.raises(ModelLoadError, match=needle) as caught:
        resolve_source(source)
    assert "\n" not in str(caught.value)


def test_a_file_is_not_a_model(tmp_path: Path) -> None:
    file = tmp_path / "model.bin"
    file.write_text("")
    with pytest.raises(ModelLoadError, match="file"):
        resolve_source(str(file))
