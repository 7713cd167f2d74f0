"""Which models to serve: repeated --model, NAME=SOURCE, CONVOY_* env vars and the models file."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli import build_parser, settings_from_args
from server.config import Settings
from server.multi_model import ModelsFileError, load_models_file, parse_named_source, served_models
from tests.support.settings import make_settings


def _cli(*flags: str) -> Settings:
    return settings_from_args(build_parser().parse_args(["serve", *flags]))


def test_repeated_model_flag_keeps_model_a_string() -> None:
    settings = _cli("--model", "/m/a", "--model", "b=org/b", "--models", "c")
    assert settings.model == "/m/a"
    assert settings.models == ["b=org/b", "c"]
    assert [(m.model, m.model_name) for m in served_models(settings)] == [
        ("/m/a", None),
        ("org/b", "b"),
        ("c", None),
    ]


def test_env_vars_keep_working(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVOY_MODEL", "/models/one")
    monkeypatch.setenv("CONVOY_MODELS", "two=/models/two, /models/three")
    settings = Settings()
    assert settings.model == "/models/one"
    assert settings.models == ["two=/models/two", "/models/three"]
    assert len(served_models(settings)) == 3


def test_no_model_serves_the_packaged_default_alone() -> None:
    settings = make_settings()
    assert served_models(settings) == [settings]
    only_extra = served_models(make_settings(models=["x=org/x"]))
    assert [(m.model, m.model_name) for m in only_extra] == [("org/x", "x")]


@pytest.mark.parametrize(
    ("text", "name", "source"),
    [
        ("mini=/srv/models/mini", "mini", "/srv/models/mini"),
        ("org/model", None, "org/model"),
        ("/srv/a=b", None, "/srv/a=b"),
        ("./rel", None, "./rel"),
    ],
)
def test_named_source(text: str, name: str | None, source: str) -> None:
    entry = parse_named_source(text)
    assert (entry.name, entry.source) == (name, source)


def test_model_name_names_the_first_model() -> None:
    models = served_models(make_settings(model="/m/a", model_name="alpha", models=["/m/b"]))
    assert [m.model_name for m in models] == ["alpha", None]
    with pytest.raises(ModelsFileError, match="no --model"):
        served_models(make_settings(model_name="alpha", models=["/m/b"]))


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ModelsFileError, match="given twice: x"):
        served_models(make_settings(model="x=/m/a", models=["x=/m/b"]))


def test_models_file_overrides_flags_per_model(tmp_path: Path) -> None:
    (tmp_path / "local-model").mkdir()
    path = tmp_path / "models.toml"
    path.write_text(
        """
[[models]]
name = "small"
source = "local-model"
device = "cuda:1"
dtype = "float16"
max_batch_size = 64

[[models]]
source = "org/other"
task = "classify"
"""
    )
    small, other = served_models(make_settings(models_file=path, max_batch_size=8, max_wait_ms=3))
    assert small.model == str(tmp_path / "local-model") and small.model_name == "small"
    assert (small.device, small.dtype, small.max_batch_size, small.max_wait_ms) == (
        "cuda:1",
        "float16",
        64,
        3,
    )
    assert other.model == "org/other" and other.task == "classify"
    assert (other.device, other.max_batch_size, other.torch_threads) == ("auto", 8, 1)
    assert small.models == [] and small.models_file is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[models]]\nsource = 'a'\nbatch = 3\n", r"model #1: batch: Extra inputs"),
        ("[[models]]\nsource = 'a'\n[[models]]\ntask = 'dance'\n", r"model #2: task:"),
        ("models = 3\n", "one or more \\[\\[models\\]\\] tables"),
        ("[[models]\n", "not valid TOML"),
        ("[server]\nport = 1\n[[models]]\nsource = 'a'\n", "nothing else"),
    ],
)
def test_bad_models_file_is_one_clear_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(content)
    with pytest.raises(ModelsFileError, match=message) as info:
        load_models_file(path)
    assert "\n" not in str(info.value)


def test_out_of_range_entry_names_the_model(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text("[[models]]\nname = 'big'\nmax_batch_size = 0\n")
    with pytest.raises(ModelsFileError, match="model 'big': max_batch_size"):
        served_models(make_settings(models_file=path))
    path.write_text("[[models]]\nname = 'gpu'\ndevice = 'tpu'\n")
    with pytest.raises(ModelsFileError, match="model 'gpu': device"):
        served_models(make_settings(models_file=path))


def test_missing_models_file(tmp_path: Path) -> None:
    with pytest.raises(ModelsFileError, match="cannot read models file"):
        served_models(make_settings(models_file=tmp_path / "nope.toml"))


def test_cli_reports_a_bad_models_file_in_one_line(tmp_path: Path) -> None:
    from server.cli import main

    path = tmp_path / "models.toml"
    path.write_text("[[models]]\nsource = 'a'\nwat = 1\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--models-file", str(path)])
    assert "wat: Extra inputs are not permitted" in str(exit_info.value.code)
