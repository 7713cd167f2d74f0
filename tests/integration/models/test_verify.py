"""`convoy verify`: exit 0 on every real model shape, 1 when forced wrong, 2 on usage errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from models.hub import default_model_path
from server.cli import main
from tests.support.st_models import BUILDERS

pytestmark = pytest.mark.integration

StModel = Callable[[str], Path]


def convoy(*args: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    return int(exited.value.code or 0)


@pytest.mark.parametrize("shape", list(BUILDERS))
def test_every_model_shape_matches_its_reference(
    shape: str, st_model: StModel, capsys: pytest.CaptureFixture[str]
) -> None:
    code = convoy("verify", str(st_model(shape)))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "MISMATCH" not in out and "probes match" in out


def test_a_wrong_pooling_is_caught(capsys: pytest.CaptureFixture[str]) -> None:
    code = convoy("verify", str(default_model_path()), "--pooling", "cls")
    out = capsys.readouterr().out
    assert code == 1
    assert "pooling cls (override)" in out and "MISMATCH" in out


def test_probe_texts_come_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    probes = tmp_path / "probes.txt"
    probes.write_text("first probe\n\nsecond probe\n", encoding="utf-8")
    assert convoy("verify", str(default_model_path()), "--texts", str(probes)) == 0
    out = capsys.readouterr().out
    assert "first probe" in out and "second probe" in out and "2/2 probes match" in out


def test_rerank_probe_lines_are_query_tab_document(
    tmp_path: Path, st_model: StModel, capsys: pytest.CaptureFixture[str]
) -> None:
    probes = tmp_path / "pairs.txt"
    probes.write_text("what is batching?\tgrouping requests\na document for the built-in query\n")
    assert convoy("verify", str(st_model("cross_encoder")), "--texts", str(probes)) == 0
    assert "what is batching? | grouping requests" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "/no/such/model"],
        ["verify", "model", "--tolerance", "5"],
        ["verify", "model", "--texts", "/no/such/file"],
        ["verify", "model", "--task", "summarize"],
    ],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert convoy(*args) == 2
    assert "error" in capsys.readouterr().err


def test_without_sentence_transformers_it_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import now raises ImportError
    assert convoy("verify", str(default_model_path())) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'convoy[verify]'" in err


def test_verify_as_a_user_runs_it(st_model: StModel) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "verify", str(st_model("cross_encoder"))],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rerank" in result.stdout and "CrossEncoder.predict" in result.stdout
