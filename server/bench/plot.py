"""`--plot FILE.png`: throughput and p50/p99 latency against load, one row of two charts per panel.

matplotlib comes with the optional extra `convoy[bench]`; it is imported only when a plot is asked
for, and drawn on a bare `Figure` (no pyplot global state, no display needed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from server.bench.stats import LevelSummary

MISSING = "plotting needs matplotlib: pip install 'convoy[bench]'"
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


class PlotUnavailable(RuntimeError):
    pass


def require_matplotlib() -> None:
    """Fail before the run, not after it, when the plot cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable(MISSING) from None


@dataclass
class Panel:
    """One row of the figure: some series of levels, and horizontal lines for the offline limits."""

    title: str
    series: Mapping[str, Sequence[LevelSummary]]
    limits: Mapping[str, float] = field(default_factory=dict)  # label -> chunks/s


def _x_label(series: Mapping[str, Sequence[LevelSummary]]) -> str:
    modes = {s.mode for levels in series.values() for s in levels}
    if modes == {"open"}:
        return "offered load (requests/s)"
    return "batch size" if modes == {"offline"} else "concurrency (requests in flight)"


def plot_panels(panels: Sequence[Panel], path: Path, title: str | None = None) -> None:
    require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(12, 4.2 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 2, squeeze=False)
    for (ax_tp, ax_lat), panel in zip(axes, panels, strict=True):
        levels_seen: set[float] = set()
        for i, (name, levels) in enumerate(panel.series.items()):
            colour = _COLOURS[i % len(_COLOURS)]
            xs = [s.level for s in levels]
            levels_seen.update(xs)
            ax_tp.plot(xs, [s.chunks_per_s for s in levels], "o-", color=colour, label=name, lw=2)
            ax_lat.plot(xs, [s.latency_ms["p50"] for s in levels], "o-", color=colour, label=f"{name} p50")
            ax_lat.plot(xs, [s.latency_ms["p99"] for s in levels], "s--", color=colour, label=f"{name} p99")
        for j, (name, value) in enumerate(panel.limits.items()):
            ax_tp.axhline(value, color="0.35", ls=(0, (4, 2 + 2 * j)), lw=1.2)
            # Labelled on the line itself: the limits are what the eye compares the curves with.
            ax_tp.annotate(
                f"{name}: {value:,.0f}/s",
                xy=(0.01, value),
                xycoords=("axes fraction", "data"),
                va="bottom",
                fontsize="small",
                color="0.25",
            )
        ticks = sorted(levels_seen)
        for ax in (ax_tp, ax_lat):
            if len(ticks) > 1 and min(ticks) > 0:
                ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
            ax.grid(True, alpha=0.3)
            ax.set_xlabel(_x_label(panel.series))
        top = max([*panel.limits.values(), *(s.chunks_per_s for v in panel.series.values() for s in v), 1.0])
        ax_tp.set_ylim(0, top * 1.12)  # room above the highest line for its label
        ax_tp.set_ylabel("chunks/s (higher is better)")
        ax_tp.set_title(f"{panel.title}: throughput")
        ax_tp.legend(fontsize="small", loc="lower right")
        ax_lat.set_yscale("log")
        ax_lat.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax_lat.set_ylabel("latency ms (lower is better)")
        ax_lat.set_title(f"{panel.title}: latency p50 / p99")
        ax_lat.legend(fontsize="small", loc="upper left")
    if title:
        fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
