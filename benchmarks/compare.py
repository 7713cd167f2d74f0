#!/usr/bin/env python3
"""Batched vs unbatched server vs the raw model, in one run on one machine -> docs/benchmarks.md.

Starts two `convoy serve` processes (max batch 32 and max batch 1), measures the offline limit
(`convoy bench --offline`: the raw model, tokenisation included, no HTTP) and sweeps both
servers with `convoy bench`, repeating everything and interleaving the configurations so slow
drift on a noisy machine hits them alike; the report gives medians over the repeats. With
taskset and 2+ CPUs the servers and the offline run are pinned to one CPU and the load
generator to another. It also samples each server's RSS (idle and peak under load) and
measures the load generator's own ceiling against a trivial echo server.

    .venv/bin/python benchmarks/compare.py --quick              # smoke run, about a minute
    .venv/bin/python benchmarks/compare.py                      # the real thing, ~25 minutes
    .venv/bin/python benchmarks/compare.py --device cuda --dtype float16 --section "H100"

The Markdown goes between `<!-- compare:begin NAME -->` / `<!-- compare:end NAME -->` markers,
so runs on other machines (sections) live side by side in one file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.bench.plot import Panel, plot_panels  # noqa: E402
from server.bench.report import markdown_table, read_json  # noqa: E402
from server.bench.stats import LevelSummary  # noqa: E402

PROFILE_TITLES = {
    "short": "short texts (~19 tokens)",
    "paragraph": "paragraphs (~130 tokens)",
    "long": "long documents (2-4k characters, several chunks)",
    "mixed": "mixed lengths (9-190 tokens)",
}
# Floors from issue 5, checked where the sweep has the level they name.
THROUGHPUT_FLOOR = {"short": 0.9, "paragraph": 0.95}
LATENCY_SLACK_MS = 3.0
TAIL_RATIO = 3.0


# ---- machine -----------------------------------------------------------------------------------
def _run_text(cmd: Sequence[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_description(device: str) -> dict[str, str]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _run_text(["lscpu"]).splitlines() if "Model name" in line),
        "unknown CPU",
    )
    mem = next(
        (
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        "0",
    )
    info = {
        "cpu": cpu,
        "cpus": str(os.cpu_count()),
        "memory": f"{int(mem) / 2**20:.1f} GiB",
        "python": sys.version.split()[0],
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "commit": _run_text(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]) or "unknown",
        "dirty": "yes" if _run_text(["git", "-C", str(ROOT), "status", "--porcelain"]) else "no",
    }
    if device.startswith("cuda"):
        names = _run_text(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]).splitlines()
        info["gpu"] = names[0] if names else "unknown GPU"
    return info


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# ---- processes ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_bytes(pid: int) -> int:
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """Peak RSS of one process while a block runs, sampled a few times a second on a joined thread."""

    def __init__(self, pid: int, every_s: float = 0.25) -> None:
        self.pid, self.every_s, self.peak = pid, every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler")

    def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, rss_bytes(self.pid))
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    log: Path
    cwd: Path | None = None  # another checkout's `python -m server.cli` (benchmarks/overhead.py --baseline)
    proc: subprocess.Popen[bytes] | None = None
    idle_rss: int = 0
    peak_rss: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            self.argv, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=self.cwd
        )

    def wait_ready(self, timeout_s: float = 600.0, path: str = "/ready") -> None:
        import httpx

        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} server exited; see {self.log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}{path}", timeout=2, trust_env=False).status_code == 200:
                    return
            time.sleep(0.2)  # polling another process's start-up; nothing to wait on instead
        raise SystemExit(f"{self.name} server not ready after {timeout_s:.0f} s; see {self.log}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # uvicorn drains on SIGINT
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def pinned(cpus: str | None, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if cpus else argv


def shown(argv: Sequence[str]) -> str:
    """A command as the report prints it: run from the repository root with the venv's python."""
    return shlex.join(argv).replace(sys.executable, "python").replace(str(ROOT) + "/", "")


# ---- the run -----------------------------------------------------------------------------------
@dataclass
class Plan:
    args: argparse.Namespace
    work: Path
    server_cpus: str | None
    bench_cpus: str | None
    env: dict[str, str]
    commands: list[str] = field(default_factory=list)

    def bench_flags(self) -> list[str]:
        a = self.args
        return ["--duration", str(a.duration), "--warmup", str(a.warmup), "--no-progress"]

    def note(self, argv: Sequence[str]) -> None:
        if shown(argv) not in self.commands:
            self.commands.append(shown(argv))

    def run(self, argv: list[str], label: str) -> None:
        self.note(argv)
        print(f"[compare] {label}", flush=True)
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
        (self.work / f"{label.replace(' ', '_').replace('/', '-')}.log").write_text(
            result.stdout + result.stderr
        )
        if result.returncode != 0:
            raise SystemExit(f"{label} failed ({result.returncode}):\n{result.stderr[-2000:]}")


def serve_argv(plan: Plan, batch: int, port: int) -> list[str]:
    a = plan.args
    argv = [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--max-batch-size", str(batch)]
    argv += ["--device", a.device, "--dtype", a.dtype, "--no-access-log", "--log-level", "warning"]
    if a.torch_threads:
        argv += ["--torch-threads", str(a.torch_threads)]
    return pinned(plan.server_cpus, argv)


def run_offline(plan: Plan, profile: str, repeat: int) -> Path:
    a = plan.args
    out = plan.work / f"offline-{profile}-{repeat}.json"
    argv = [sys.executable, "-m", "server.cli", "bench", "--offline", "--profile", profile]
    argv += ["--max-batch-size", str(a.batched), "--device", a.device, "--dtype", a.dtype]
    if a.torch_threads:
        argv += ["--torch-threads", str(a.torch_threads)]
    argv += [*plan.bench_flags(), "--json", str(out)]
    plan.run(pinned(plan.server_cpus, argv), f"offline {profile} #{repeat + 1}")
    return out


def run_sweep(plan: Plan, server: Server, profile: str, repeat: int) -> Path:
    out = plan.work / f"{server.name}-{profile}-{repeat}.json"
    argv = [sys.executable, "-m", "server.cli", "bench", "--url", server.url, "--profile", profile]
    argv += ["--sweep", plan.args.sweep, *plan.bench_flags(), "--json", str(out)]
    assert server.proc is not None
    with RssSampler(server.proc.pid) as rss:
        plan.run(pinned(plan.bench_cpus, argv), f"{server.name} {profile} #{repeat + 1}")
    server.peak_rss = max(server.peak_rss, rss.peak)
    return out


def paired_latency(plan: Plan, profiles: Sequence[str]) -> dict[str, dict[str, float]]:
    """benchmarks/latency.py on these profiles: c=1 against the raw model, in alternating blocks."""
    a = plan.args
    out = plan.work / "latency.json"
    argv = [sys.executable, str(ROOT / "benchmarks" / "latency.py"), "--profiles", ",".join(profiles)]
    argv += ["--texts", str(a.latency_texts), "--device", a.device, "--dtype", a.dtype, "--json", str(out)]
    argv += [
        "--torch-threads",
        str(a.torch_threads or 1),
        "--block",
        str(max(10, min(50, a.latency_texts // 8))),
    ]
    if plan.server_cpus and plan.bench_cpus:
        argv += ["--server-cpus", plan.server_cpus, "--client-cpus", plan.bench_cpus]
    plan.run(argv, "paired c=1 latency")
    paired: dict[str, dict[str, float]] = json.loads(out.read_text())
    return paired


def generator_overhead(plan: Plan) -> dict[str, float]:
    """The bench against a server that does nothing: its ceiling, and its CPU per request."""
    port = free_port()
    echo = Server(
        "echo",
        pinned(
            plan.server_cpus,
            [sys.executable, str(ROOT / "benchmarks" / "echo_server.py"), "--port", str(port)],
        ),
        port,
        plan.work / "echo.log",
    )
    plan.note(echo.argv)
    echo.start(plan.env)
    try:
        echo.wait_ready()
        out = plan.work / "echo.json"
        argv = [sys.executable, "-m", "server.cli", "bench", "--url", echo.url, "--concurrency", "64"]
        plan.run(
            pinned(plan.bench_cpus, [*argv, *plan.bench_flags(), "--json", str(out)]), "generator overhead"
        )
    finally:
        echo.stop()
    (level,) = read_json(out)["levels"]
    cpu_us = (level.client_cpu or 0) * level.elapsed_s / max(level.requests, 1) * 1e6
    return {
        "requests_per_s": level.requests_per_s,
        "cpu_us_per_request": cpu_us,
        "cpu": level.client_cpu or 0,
    }


# ---- medians and the report --------------------------------------------------------------------
def median_levels(runs: Sequence[Sequence[LevelSummary]]) -> list[LevelSummary]:
    """Per level label, the median over repeats of each rate and latency; errors are summed."""
    by_label: dict[str, list[LevelSummary]] = {}
    for levels in runs:
        for s in levels:
            by_label.setdefault(s.label, []).append(s)
    out = []
    for label, group in by_label.items():
        first = group[0]

        def med(values: list[float | None]) -> float | None:
            known = [v for v in values if v is not None]
            return statistics.median(known) if known else None

        errors: dict[str, int] = {}
        for s in group:
            for kind, n in s.errors.items():
                errors[kind] = errors.get(kind, 0) + n
        out.append(
            LevelSummary(
                label=label,
                mode=first.mode,
                level=first.level,
                requests=sum(s.requests for s in group),
                errors=errors,
                elapsed_s=sum(s.elapsed_s for s in group),
                requests_per_s=statistics.median(s.requests_per_s for s in group),
                chunks_per_s=statistics.median(s.chunks_per_s for s in group),
                tokens_per_s=med([s.tokens_per_s for s in group]),
                latency_ms={k: statistics.median(s.latency_ms[k] for s in group) for k in first.latency_ms},
                server_queue_ms_p50=med([s.server_queue_ms_p50 for s in group]),
                server_inference_ms_p50=med([s.server_inference_ms_p50 for s in group]),
                server_mean_batch=med([s.server_mean_batch for s in group]),
                client_cpu=med([s.client_cpu for s in group]),
                extra={
                    **first.extra,
                    "repeats": len(group),
                    "chunks_per_s_all": [round(s.chunks_per_s, 1) for s in group],
                },
            )
        )
    return out


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _errors(s: LevelSummary) -> str:
    return " ".join(f"{k}={n}" for k, n in s.errors.items()) or "0"


@dataclass
class ProfileResult:
    profile: str
    batched: list[LevelSummary]
    unbatched: list[LevelSummary]
    offline: list[LevelSummary]
    padding: dict[str, Any]

    def raw(self, suffix: str) -> LevelSummary:
        return next(s for s in self.offline if s.label.endswith(suffix))


def profile_section(r: ProfileResult, batch: int) -> str:
    raw_big, raw_one = r.raw(f"b={batch}"), r.raw("b=1")
    rows = []
    for b, u in zip(r.batched, r.unbatched, strict=True):
        rows.append(
            [
                b.label.removeprefix("c="),
                _f(b.chunks_per_s),
                _f(b.latency_ms["p50"]),
                _f(b.latency_ms["p99"]),
                _f(b.server_mean_batch),
                _f(u.chunks_per_s),
                _f(u.latency_ms["p50"]),
                _f(u.latency_ms["p99"]),
                _f(b.chunks_per_s / u.chunks_per_s if u.chunks_per_s else None, 2),
                _f(b.chunks_per_s / raw_big.chunks_per_s, 2),
                f"{_errors(b)} / {_errors(u)}",
            ]
        )
    table = markdown_table(
        [
            "concurrency",
            f"batched (max {batch}) chunks/s",
            "p50 ms",
            "p99 ms",
            "mean batch",
            "unbatched chunks/s",
            "p50 ms",
            "p99 ms",
            "batched / unbatched",
            f"batched / raw b={batch}",
            "errors (batched / unbatched)",
        ],
        rows,
    )
    raw_rows = [
        [
            s.label,
            _f(s.chunks_per_s),
            _f(s.tokens_per_s, 0),
            _f(s.latency_ms["p50"], 2),
            f"{s.extra['padding_overhead']:.1%}",
        ]
        for s in r.offline
    ]
    raw_table = markdown_table(
        ["raw model", "chunks/s", "tokens/s", "p50 ms per batch", "padding overhead"], raw_rows
    )
    return (
        f"### {PROFILE_TITLES.get(r.profile, r.profile)}\n\n{table}\n\n{raw_table}\n\n"
        f"Raw batch-1 latency (tokenise + forward) is {raw_one.latency_ms['p50']:.2f} ms.\n"
    )


def goal_rows(
    results: Sequence[ProfileResult], batch: int, paired: dict[str, dict[str, float]] | None = None
) -> list[list[str]]:
    """The goal table; `paired` (benchmarks/latency.py's summary per profile), when measured,
    judges c=1 latency instead of the sweep's c=1 level against a raw run minutes away from it."""
    rows: list[list[str]] = []

    def add(profile: str, check: str, target: str, measured: str, met: bool) -> None:
        rows.append([profile, check, target, measured, "yes" if met else "**no**"])

    for r in results:
        by_level = {s.label: s for s in r.batched}
        raw_big, raw_one = r.raw(f"b={batch}"), r.raw("b=1")
        if "c=64" in by_level:
            c64 = by_level["c=64"]
            if r.profile in THROUGHPUT_FLOOR:
                ratio = c64.chunks_per_s / raw_big.chunks_per_s
                floor = THROUGHPUT_FLOOR[r.profile]
                add(
                    r.profile,
                    f"chunks/s at c=64 / raw b={batch}",
                    f">= {floor}",
                    f"{ratio:.2f}",
                    ratio >= floor,
                )
            tail = c64.latency_ms["p99"] / c64.latency_ms["p50"]
            add(r.profile, "p99 / p50 at c=64", f"<= {TAIL_RATIO:g}", f"{tail:.2f}", tail <= TAIL_RATIO)
        if paired and r.profile in paired:
            p = paired[r.profile]
            add(
                r.profile,
                "p50 at c=1 - raw model, paired (latency.py)",
                f"<= {LATENCY_SLACK_MS:g} ms",
                f"{p['diff']:+.2f} ms (quartiles {p['diff_q1']:+.2f} to {p['diff_q3']:+.2f})",
                p["diff"] <= LATENCY_SLACK_MS,
            )
        elif "c=1" in by_level:
            extra = by_level["c=1"].latency_ms["p50"] - raw_one.latency_ms["p50"]
            add(
                r.profile,
                "p50 at c=1 - raw b=1 latency",
                f"<= {LATENCY_SLACK_MS:g} ms",
                f"{extra:+.2f} ms",
                extra <= LATENCY_SLACK_MS,
            )
        if "c=256" in by_level:
            errors = by_level["c=256"].error_total
            add(r.profile, "errors at c=256", "0", str(errors), errors == 0)
        if r.profile == "mixed":
            pad = r.padding
            add(
                r.profile,
                f"padding overhead, sorted (window {pad['sort_window']}) vs arrival order",
                "sorted lower",
                f"{pad['sorted']:.1%} vs {pad['arrival_order']:.1%}",
                pad["sorted"] < pad["arrival_order"],
            )
    return rows


def render_section(
    name: str,
    plan: Plan,
    machine: dict[str, str],
    results: Sequence[ProfileResult],
    servers: Sequence[Server],
    overhead: dict[str, float] | None,
    plot_path: Path | None,
    out_path: Path,
    paired: dict[str, dict[str, float]] | None = None,
) -> str:
    a = plan.args
    lines = [f"## {name}", ""]
    if a.quick:
        lines += [
            "> **Smoke run (`--quick`)**: seconds per level on a shared machine; it proves the tooling,",
            "> the figures are not a measurement.",
            "",
        ]
    gpu = f", GPU {machine['gpu']}" if "gpu" in machine else ""
    pin = (
        f"server and offline runs pinned to CPU {plan.server_cpus}, load generator to CPU {plan.bench_cpus}"
        if plan.server_cpus
        else "not pinned"
    )
    lines += [
        f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine['cpu']}, {machine['cpus']} CPUs, {machine['memory']} RAM{gpu}",
        f"- Software: Python {machine['python']}, torch {machine['torch']}, transformers "
        f"{machine['transformers']}, commit {machine['commit']} (uncommitted changes: {machine['dirty']})",
        f"- Setup: {pin}; device {a.device}, dtype {a.dtype}, torch threads {a.torch_threads or 'default'}",
        f"- Method: {a.repeats} repeat(s), configurations interleaved, medians reported; {a.duration} s per "
        f"level after {a.warmup} s warm-up; closed loop; `/predict`; the bench's deterministic corpus",
        "",
    ]
    if plot_path is not None:
        rel = os.path.relpath(plot_path, out_path.parent)
        lines += [f"![throughput and latency against concurrency]({rel})", ""]
    lines += ["### Goals (issues 5 and 14: the CPU floors)", ""]
    lines += [
        markdown_table(
            ["profile", "check", "target", "measured", "met"], goal_rows(results, a.batched, paired)
        ),
        "",
    ]
    if paired:
        lines += [
            "c=1 latency is judged paired (`benchmarks/latency.py`): the server and the raw model "
            "(tokenise + forward, no HTTP) run the same texts one at a time in alternating blocks on "
            "the same CPU, and the check is the median of the per-block p50 differences. The "
            "sweep's c=1 level and the raw batch-1 run below are minutes apart, which on a shared "
            "machine moves them by more than the 3 ms they would be judged by.",
            "",
        ]
    for r in results:
        lines.append(profile_section(r, a.batched))
    mem_rows = [[s.name, f"{s.idle_rss / 2**20:.0f} MiB", f"{s.peak_rss / 2**20:.0f} MiB"] for s in servers]
    lines += [
        "### Server memory (RSS)",
        "",
        markdown_table(["server", "idle", "peak under load"], mem_rows),
        "",
    ]
    if overhead:
        cpu_us = overhead["cpu_us_per_request"]
        top = max(s.requests_per_s for r in results for s in (*r.batched, *r.unbatched))
        lines += [
            "### Load generator overhead",
            "",
            f"Against a trivial echo server at concurrency 64 the generator reached "
            f"{overhead['requests_per_s']:,.0f} requests/s using {overhead['cpu']:.0%} of its CPU, "
            f"{cpu_us:,.0f} µs of CPU per request. At the highest server rate above ({top:,.0f} "
            f"requests/s) that is about {top * cpu_us / 1e6:.0%} of one CPU.",
            "",
        ]
    lines += ["### Commands", "", "```bash", *plan.commands, "```", ""]
    return "\n".join(lines)


_HEADER = """# Benchmarks

Measured with `benchmarks/compare.py` (see the README's *Benchmarks* section): the server with
dynamic batching (max batch 32) and without (max batch 1) against the raw model on the same
device and corpus, tokenisation included. Chunks/s count correct answers only; latency is per
request, measured by the client. Each section below is one run of the script on one machine.
"""


def write_section(path: Path, name: str, body: str) -> None:
    begin, end = f"<!-- compare:begin {name} -->", f"<!-- compare:end {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else _HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


_FULL: dict[str, Any] = {
    "profiles": "short,paragraph,mixed",
    "sweep": "1,4,16,64,256",
    "repeats": 3,
    "duration": 10.0,
    "warmup": 2.0,
    "latency_texts": 400,
}
_QUICK: dict[str, Any] = {
    "profiles": "short",
    "sweep": "1,16,64",
    "repeats": 1,
    "duration": 2.0,
    "warmup": 0.5,
    "latency_texts": 40,
}


# ---- main --------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="smoke run: the defaults in brackets after 'quick:'")
    p.add_argument("--profiles", help="corpus profiles [short,paragraph,mixed; quick: short]")
    p.add_argument("--sweep", help="concurrency levels [1,4,16,64,256; quick: 1,16,64]")
    p.add_argument("--repeats", type=int, help="repeats of everything; medians reported [3; quick: 1]")
    p.add_argument("--duration", type=float, help="seconds per level [10; quick: 2]")
    p.add_argument("--warmup", type=float, help="warm-up seconds per level [2; quick: 0.5]")
    p.add_argument("--batched", type=int, default=32, help="max batch size of the batched server [32]")
    p.add_argument("--device", default="auto", help="passed to the servers and the offline run [auto]")
    p.add_argument("--dtype", default="auto", help="passed to the servers and the offline run [auto]")
    p.add_argument("--torch-threads", type=int, default=None, help="[1 on CPU when pinned]")
    p.add_argument("--server-cpus", help="taskset CPU list for servers and offline runs [1]")
    p.add_argument("--bench-cpus", help="taskset CPU list for the load generator [0]")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument("--no-overhead", action="store_true", help="skip the load-generator overhead check")
    p.add_argument(
        "--latency-texts",
        type=int,
        help="texts per profile of the paired c=1 check (benchmarks/latency.py); 0 skips it [400; quick: 40]",
    )
    p.add_argument(
        "--out", default=str(ROOT / "docs" / "benchmarks.md"), help="Markdown file [docs/benchmarks.md]"
    )
    p.add_argument("--section", help="section name in the file [the machine, from lscpu or the GPU]")
    p.add_argument(
        "--work", default=str(ROOT / "bench-out"), help="raw JSON and logs go under here [bench-out/]"
    )
    args = p.parse_args(argv)
    defaults = _QUICK if args.quick else _FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def plan_pinning(args: argparse.Namespace) -> tuple[str | None, str | None]:
    if args.no_pin or not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        return None, None
    return args.server_cpus or "1", args.bench_cpus or "0"


@contextlib.contextmanager
def running(servers: Sequence[Server], env: dict[str, str]) -> Iterator[None]:
    try:
        for s in servers:
            s.start(env)
        for s in servers:
            s.wait_ready()
            s.idle_rss = rss_bytes(s.proc.pid) if s.proc else 0
        yield
    finally:
        for s in servers:
            s.stop()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    server_cpus, bench_cpus = plan_pinning(args)
    if args.torch_threads is None and server_cpus and not args.device.startswith("cuda"):
        args.torch_threads = 1
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    work = Path(args.work) / f"compare-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    plan = Plan(args, work, server_cpus, bench_cpus, env)
    machine = machine_description(args.device)
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    servers = [
        Server(name, serve_argv(plan, batch, port), port, work / f"{name}.log")
        for name, batch, port in (("batched", args.batched, free_port()), ("unbatched", 1, free_port()))
    ]
    for s in servers:
        plan.note(s.argv)

    overhead = None if args.no_overhead else generator_overhead(plan)
    offline_runs: dict[str, list[Path]] = {p: [] for p in profiles}
    sweep_runs: dict[tuple[str, str], list[Path]] = {}
    with running(servers, env):
        for repeat in range(args.repeats):
            for profile in profiles:
                offline_runs[profile].append(run_offline(plan, profile, repeat))
                # Alternate which configuration goes first, so drift does not favour one.
                order = servers if repeat % 2 == 0 else list(reversed(servers))
                for server in order:
                    sweep_runs.setdefault((server.name, profile), []).append(
                        run_sweep(plan, server, profile, repeat)
                    )

    paired = paired_latency(plan, profiles) if args.latency_texts else None
    results = []
    for profile in profiles:
        offline_docs = [read_json(p) for p in offline_runs[profile]]
        pads = [d["padding"] for d in offline_docs]
        padding = {
            **pads[0],
            "arrival_order": statistics.median(p["arrival_order"] for p in pads),
            "sorted": statistics.median(p["sorted"] for p in pads),
        }
        offline = median_levels([d["levels"] for d in offline_docs])
        per_config = {
            name: median_levels([read_json(p)["levels"] for p in sweep_runs[(name, profile)]])
            for name in ("batched", "unbatched")
        }
        results.append(
            ProfileResult(profile, per_config["batched"], per_config["unbatched"], offline, padding)
        )

    name = args.section or (machine.get("gpu") or machine["cpu"])
    out_path = Path(args.out)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    plot_path = out_path.parent / (f"benchmarks-{slug}.png" if args.section else "benchmarks.png")
    plot_panels(
        [
            Panel(
                title=PROFILE_TITLES.get(r.profile, r.profile),
                series={f"batched (max {args.batched})": r.batched, "unbatched (max 1)": r.unbatched},
                limits={
                    f"raw b={args.batched}": r.raw(f"b={args.batched}").chunks_per_s,
                    "raw b=1": r.raw("b=1").chunks_per_s,
                },
            )
            for r in results
        ],
        plot_path,
        title=f"Convoy /predict, {name}",
    )
    body = render_section(name, plan, machine, results, servers, overhead, plot_path, out_path, paired)
    write_section(out_path, name, body)
    print(body)
    print(f"[compare] wrote {out_path} and {plot_path}; raw JSON and logs in {work}")


if __name__ == "__main__":
    main()
