"""benchmarks/compare.py: medians over repeats, goal checks, and rewriting only its own section."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from server.bench.stats import LevelSummary
from tests.support.paths import REPO_ROOT as ROOT


@pytest.fixture(scope="module")
def compare() -> ModuleType:
    # benchmarks/ is a folder of scripts, not a package: load the file as a module.
    spec = importlib.util.spec_from_file_location("convoy_compare", ROOT / "benchmarks" / "compare.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def _level(
    label: str, chunks_per_s: float, p50: float, p99: float, errors: dict[str, int] | None = None
) -> LevelSummary:
    level = float(label.split("=")[1]) if "=" in label else 1.0
    return LevelSummary(
        label=label,
        mode="closed",
        level=level,
        requests=10,
        errors=errors or {},
        elapsed_s=1.0,
        requests_per_s=chunks_per_s,
        chunks_per_s=chunks_per_s,
        tokens_per_s=None,
        latency_ms={"p50": p50, "p90": p50, "p99": p99, "max": p99, "mean": p50},
    )


def test_median_levels_takes_medians_and_sums_errors(compare: ModuleType) -> None:
    runs = [
        [_level("c=1", 100, 9, 12), _level("c=64", 180, 300, 500, {"http_503": 1})],
        [_level("c=1", 120, 8, 11), _level("c=64", 200, 320, 400)],
        [_level("c=1", 80, 10, 30), _level("c=64", 190, 310, 900, {"http_503": 2})],
    ]
    c1, c64 = compare.median_levels(runs)
    assert (c1.chunks_per_s, c1.latency_ms["p50"], c1.latency_ms["p99"]) == (100, 9, 12)
    assert (c64.chunks_per_s, c64.latency_ms["p99"]) == (190, 500)
    assert c64.errors == {"http_503": 3} and c64.extra["repeats"] == 3


def test_goal_rows_compare_with_the_raw_model(compare: ModuleType) -> None:
    raw = [_level("raw b=1", 115, 8.4, 9), _level("raw b=32", 208, 150, 160)]
    for s in raw:
        s.extra["padding_overhead"] = 0.0
    batched = [_level("c=1", 100, 10.0, 12), _level("c=64", 200, 300, 600), _level("c=256", 205, 900, 1000)]
    result = compare.ProfileResult("short", batched, batched, raw, {})
    rows = {row[1]: row for row in compare.goal_rows([result], 32)}
    assert rows["chunks/s at c=64 / raw b=32"][3:] == ["0.96", "yes"]
    assert rows["p99 / p50 at c=64"][3:] == ["2.00", "yes"]
    assert rows["p50 at c=1 - raw b=1 latency"][3:] == ["+1.60 ms", "yes"]
    assert rows["errors at c=256"][3:] == ["0", "yes"]
    slow = compare.ProfileResult("short", [_level("c=1", 50, 20.0, 25)], [], raw, {})
    (row,) = compare.goal_rows([slow], 32)
    assert row[3:] == ["+11.60 ms", "**no**"]


def test_paired_latency_judges_c1_when_it_was_measured(compare: ModuleType) -> None:
    raw = [_level("raw b=1", 115, 8.4, 9), _level("raw b=32", 208, 150, 160)]
    result = compare.ProfileResult("short", [_level("c=1", 100, 20.0, 25)], [], raw, {})
    paired = {"short": {"diff": 1.7, "diff_q1": 1.0, "diff_q3": 2.5}}
    (row,) = compare.goal_rows([result], 32, paired)  # the sweep's c=1 (+11.6 ms) is not judged
    assert row[1:] == [
        "p50 at c=1 - raw model, paired (latency.py)",
        "<= 3 ms",
        "+1.70 ms (quartiles +1.00 to +2.50)",
        "yes",
    ]
    paired["short"]["diff"] = 3.2
    (row,) = compare.goal_rows([result], 32, paired)
    assert row[4] == "**no**"


def test_write_section_replaces_only_its_own_section(compare: ModuleType, tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    compare.write_section(doc, "CPU box", "## CPU box\nfirst")
    compare.write_section(doc, "H100", "## H100\ngpu rows")
    compare.write_section(doc, "CPU box", "## CPU box\nsecond")
    text = doc.read_text()
    assert text.startswith("# Benchmarks")
    assert "second" in text and "first" not in text and "gpu rows" in text
    assert text.count("<!-- compare:begin CPU box -->") == 1
    assert text.index("CPU box") < text.index("H100")  # a rerun keeps its place
