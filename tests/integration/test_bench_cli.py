"""`convoy bench` end to end: the real MiniLM server, the offline limit, and what gets imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server.bench.report import read_json
from server.cli import main
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_sweep_against_minilm_writes_table_json_and_plot(
    minilm_server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, png = tmp_path / "run.json", tmp_path / "run.png"
    with pytest.raises(SystemExit) as done:
        main(
            [
                *("bench", "--url", minilm_server.url, "--sweep", "1,3", "--requests", "6"),
                *("--warmup", "0", "--progress", "--json", str(out), "--plot", str(png)),
            ]
        )
    assert done.value.code == 0
    captured = capsys.readouterr()
    assert "c=3" in captured.err and "%|" in captured.err  # the progress bar, on stderr
    table = captured.out.splitlines()
    assert table[1].split()[:4] == ["level", "ok", "req/s", "chunks/s"]
    assert table[2].startswith("c=1") and table[3].startswith("c=3")

    doc = read_json(out)
    assert doc["meta"]["route"] == "/predict" and doc["meta"]["server"]["models"][0]["name"]
    for level in doc["levels"]:
        assert level.requests == 6 and level.errors == {}
        # short texts are one chunk each, 15-24 tokens with [CLS] and [SEP]
        assert level.chunks_per_s == pytest.approx(level.requests_per_s)
        assert 15 <= level.tokens_per_s / level.chunks_per_s <= 24
        assert 0 < level.latency_ms["p50"] <= level.latency_ms["p99"] <= level.latency_ms["max"]
        assert level.server_inference_ms_p50 is not None and level.server_inference_ms_p50 > 0
        assert level.server_mean_batch is not None and 1 <= level.server_mean_batch <= 3
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 20_000


def test_offline_limit_measures_the_raw_model_on_the_same_chunks(tmp_path: Path) -> None:
    out = tmp_path / "offline.json"
    with pytest.raises(SystemExit) as done:
        main(
            [
                *("bench", "--offline", "--profile", "mixed", "--corpus-size", "48"),
                *("--max-batch-size", "8", "--sort-window", "48", "--requests", "48"),
                *("--warmup", "0", "--torch-threads", "1", "--no-progress", "--json", str(out)),
            ]
        )
    assert done.value.code == 0
    doc = read_json(out)
    labels = [level.label for level in doc["levels"]]
    assert labels == ["raw b=1", "raw b=8", "raw b=8 sorted"]
    for level in doc["levels"]:
        assert level.requests == 48 and level.errors == {} and level.chunks_per_s > 0
        assert level.extra["batches"] == 48 // level.level
    pad = doc["padding"]
    assert pad["batch_size"] == 8 and 0 <= pad["sorted"] < pad["arrival_order"]
    assert doc["levels"][0].extra["padding_overhead"] == 0  # batch 1 never pads
    assert doc["meta"]["offline"]["chunks"] == 48


def test_bench_imports_no_torch_unless_offline() -> None:
    code = (
        "import sys\n"
        "from server.cli import build_parser\n"
        "import server.bench.command, server.bench.runner, server.bench.plot, server.bench.report\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_plot_without_matplotlib_fails_before_the_run(tmp_path: Path) -> None:
    # A stub that makes `import matplotlib` fail, first on the path of a child interpreter.
    (tmp_path / "matplotlib.py").write_text("raise ImportError('no matplotlib here')\n")
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "bench", "--url", "http://127.0.0.1:9", "--plot", "x.png"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": f"{tmp_path}:{Path.cwd()}", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2
    assert "pip install 'convoy[bench]'" in result.stderr
