"""The `convoy bench` sub-command's flags; `server/cli.py` registers them with one call.

Only argparse here, so `convoy serve` pays nothing for the bench; the work is in `command.py`.
"""

from __future__ import annotations

import argparse
from typing import Any

from server.bench.corpus import DEFAULT_SIZE, PROFILES

ROUTE_CHOICES = ("/predict", "/v1/embeddings", "/process")

_DESCRIPTION = """\
Load-test a running Convoy server, or (--offline) measure the raw model it serves.

examples:
  convoy bench --concurrency 16 --duration 10
  convoy bench --sweep 1,4,16,64,256 --profile paragraph --json out.json --plot out.png
  convoy bench --rate 50,100,200 --duration 20           # open loop, Poisson arrivals
  convoy bench --concurrency 256 --processes 4            # when one client process saturates
  convoy bench --route /v1/embeddings --profile long
  convoy bench --offline --profile short --max-batch-size 32 --torch-threads 1
"""


def _positive_list(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> list[int] | list[float]:
        try:
            values = [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
        if not values or any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
        return values

    return parse


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value

    return parse


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `bench` to `convoy`'s sub-commands."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="load-test a server (or the raw model with --offline)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t = p.add_argument_group("target")
    t.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL [%(default)s]")
    t.add_argument("--route", default="/predict", choices=ROUTE_CHOICES, help="route to load [%(default)s]")
    t.add_argument("--model-name", help="`model` sent to /v1/embeddings [default: the server's first model]")
    t.add_argument(
        "--api-url",
        action="append",
        default=[],
        help="upstream URL for /process (repeatable; required there)",
    )
    t.add_argument(
        "--api-key", help="sent as `Authorization: Bearer KEY` [env CONVOY_BENCH_API_KEY; default: none]"
    )
    t.add_argument(
        "--timeout", type=_positive(float), default=60.0, help="per-request timeout, s [%(default)s]"
    )

    load = p.add_argument_group("load (closed loop by default)")
    load.add_argument("--concurrency", "-c", type=_positive(int), help="requests in flight [1]")
    load.add_argument(
        "--sweep",
        type=_positive_list(int),
        help="concurrency levels run one after another, e.g. 1,4,16,64,256",
    )
    load.add_argument(
        "--rate",
        type=_positive_list(float),
        help="open loop: Poisson arrivals at R requests/s (a list sweeps rates); "
        "--concurrency then caps requests in flight [512]",
    )
    load.add_argument("--requests", "-n", type=_positive(int), help="requests per level")
    load.add_argument(
        "--duration", "-d", type=_positive(float), help="seconds per level [10 unless --requests is given]"
    )
    load.add_argument(
        "--warmup", type=_non_negative, default=1.0, help="seconds of discarded load before each level [1]"
    )
    load.add_argument("--seed", type=int, default=0, help="seed of the corpus and the arrivals [0]")
    load.add_argument(
        "--processes",
        "-p",
        type=_positive(int),
        default=1,
        help="generator processes, each with its share of the concurrency (or rate) and requests; "
        "one merged report. One process manages a few thousand requests/s [1]",
    )

    src = p.add_argument_group("inputs")
    src.add_argument("--profile", default="short", choices=PROFILES, help="generated corpus [%(default)s]")
    src.add_argument("--file", help="texts to send instead: one per line, or .jsonl with a text field")
    src.add_argument(
        "--corpus-size", type=_positive(int), default=DEFAULT_SIZE, help="texts generated [%(default)s]"
    )
    src.add_argument(
        "--chunk-size",
        type=_positive(int),
        default=1000,
        help="chunk_size sent (one chunk per text except `long`) [%(default)s]",
    )

    out = p.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    out.add_argument("--plot", metavar="FILE.png", help="throughput and latency chart (needs convoy[bench])")
    out.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr [when it is a terminal]",
    )

    off = p.add_argument_group("offline limit (--offline: the raw model, no HTTP; imports torch)")
    off.add_argument("--offline", action="store_true", help="measure the raw model instead of a server")
    off.add_argument("--model", help="model path or hub id [the packaged all-MiniLM-L6-v2]")
    off.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps [%(default)s]")
    off.add_argument("--dtype", default="auto", help="auto, float32, float16, bfloat16 [%(default)s]")
    off.add_argument("--torch-threads", type=_positive(int), help="CPU threads for torch [usable cores]")
    off.add_argument(
        "--max-batch-size", type=_positive(int), default=32, help="the server's batch size [%(default)s]"
    )
    off.add_argument(
        "--sort-window",
        type=_positive(int),
        default=128,
        help="chunks sorted together by length [%(default)s]",
    )
    return p


def main(args: argparse.Namespace) -> int:
    from server.bench.command import run

    return run(args)
