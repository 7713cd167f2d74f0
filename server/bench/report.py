"""The bench's outputs: a fixed-width table for the terminal, a Markdown table, and the JSON file."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from server.bench.stats import LevelSummary

# Above this share of one core the generator itself may be the bottleneck.
CLIENT_CPU_WARN = 0.85

_COLUMNS = (
    "level",
    "ok",
    "req/s",
    "chunks/s",
    "tokens/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "srv queue",
    "srv infer",
    "batch",
    "gen cpu",
    "errors",
)


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def format_errors(errors: Mapping[str, int]) -> str:
    return " ".join(f"{kind}={n}" for kind, n in errors.items()) or "0"


def _row(s: LevelSummary) -> list[str]:
    lat = s.latency_ms
    return [
        s.label,
        str(s.requests),
        _num(s.requests_per_s),
        _num(s.chunks_per_s),
        _num(s.tokens_per_s, 0),
        _num(lat["p50"], 2),
        _num(lat["p90"], 2),
        _num(lat["p99"], 2),
        _num(lat["max"], 2),
        _num(s.server_queue_ms_p50, 2),
        _num(s.server_inference_ms_p50, 2),
        _num(s.server_mean_batch),
        "-" if s.client_cpu is None else f"{s.client_cpu:.0%}",
        format_errors(s.errors),
    ]


def format_table(levels: Sequence[LevelSummary]) -> str:
    """Columns aligned for a terminal; numbers right-aligned, the errors column left."""
    rows = [list(_COLUMNS), *(_row(s) for s in levels)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = []
    for r in rows:
        cells = [
            c.ljust(w) if i in (0, len(r) - 1) else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def client_saturation(s: LevelSummary) -> str | None:
    """Why the generator itself may have capped this level, or None.

    A process near 100% of a core is saturated; so are N processes that together use nearly
    all the cores they may run on (two processes on one core each show only 50%).
    """
    shares: list[float] = s.extra.get("client_cpu_by_process") or (
        [] if s.client_cpu is None else [s.client_cpu]
    )
    if not shares:
        return None
    limit = "the figures may be limited by the client, not the server"
    if len(shares) == 1 and shares[0] >= CLIENT_CPU_WARN:
        return f"{s.label}: the load generator used {shares[0]:.0%} of a core; {limit}"
    if max(shares) >= CLIENT_CPU_WARN:
        each = ", ".join(f"{x:.0%}" for x in shares)
        return f"{s.label}: a load generator process used {max(shares):.0%} of a core ({each}); {limit}"
    cores = s.extra.get("client_cores")
    if cores and len(shares) > cores and sum(shares) >= CLIENT_CPU_WARN * cores:
        return (
            f"{s.label}: {len(shares)} load generator processes used {sum(shares):.1f} of the "
            f"{cores} cores they may run on; {limit}"
        )
    return None


def notes(levels: Sequence[LevelSummary]) -> list[str]:
    """Warnings a reader needs to trust (or distrust) the table."""
    out = []
    for s in levels:
        saturated = client_saturation(s)
        if saturated:
            out.append(saturated)
        for kind, example in s.error_examples.items():
            if example:
                out.append(f"{s.label}: {kind} e.g. {example[:200]!r}")
    return out


def write_json(path: Path, meta: Mapping[str, Any], levels: Sequence[LevelSummary], **extra: Any) -> None:
    doc = {"meta": dict(meta), "levels": [s.to_dict() for s in levels], **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def read_json(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    doc["levels"] = [LevelSummary.from_dict(d) for d in doc.get("levels", [])]
    return doc
