"""`convoy verify MODEL`: does Convoy compute what sentence-transformers computes for this model?

Flags and the printed table only; the comparison is `models.verify` (imported when the command
runs, so `convoy serve` pays nothing for it). Exit 0 when every probe matches, 1 on a mismatch,
2 on a usage error (bad flags, an unusable model, sentence-transformers missing).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.verify import Report

_DESCRIPTION = """\
Load MODEL the way `convoy serve` does and the way sentence-transformers does, run probe texts
through both, and compare per text: cosine similarity of the embeddings, or the absolute
difference of classifier / reranker scores.

examples:
  convoy verify sentence-transformers/all-MiniLM-L6-v2
  convoy verify ./my-model --texts probes.txt          # one text per line
  convoy verify ./my-reranker --task rerank            # lines: query<TAB>document
  convoy verify ./my-model --pooling cls               # does an override still match? (no)
"""

EXIT_MATCH, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `verify` to `convoy`'s sub-commands."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "verify",
        help="compare a model's results with sentence-transformers'",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="a model folder or a Hugging Face hub id")
    p.add_argument(
        "--task", choices=("embed", "classify", "rerank"), help="default: what the model's files say"
    )
    p.add_argument("--pooling", help="override the pooling, e.g. cls, mean, lasttoken, cls+mean")
    p.add_argument("--texts", type=argparse.FileType("r", encoding="utf-8"), help="probe texts, one per line")
    p.add_argument("--tolerance", type=_tolerance, help="1 - cosine (embed) or |score diff| allowed")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps [%(default)s]")
    p.add_argument("--dtype", default="auto", help="auto, float32, float16, bfloat16 [%(default)s]")
    return p


def main(args: argparse.Namespace) -> int:
    from models.errors import ModelLoadError
    from models.spec import ModelSpec
    from models.verify import ReferenceMissing, verify

    texts = None
    if args.texts is not None:
        with args.texts:
            texts = [line.rstrip("\r\n") for line in args.texts if line.strip()]
        if not texts:
            print(f"convoy verify: error: {args.texts.name} holds no texts", file=sys.stderr)
            return EXIT_USAGE
    spec = ModelSpec(
        source=args.model, task=args.task, device=args.device, dtype=args.dtype, pooling=args.pooling
    )
    try:
        report = verify(spec, texts=texts, tolerance=args.tolerance)
    except (ModelLoadError, ReferenceMissing) as exc:
        print(f"convoy verify: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(render(report))
    return EXIT_MATCH if report.passed else EXIT_MISMATCH


def render(report: Report) -> str:
    """The report as a table: one row per probe, then the verdict."""
    info = report.info
    if info.task == "embed":
        how = f"pooling {info.pooling} ({info.pooling_source})"
        how += f", {info.dense_layers} Dense" if info.dense_layers else ""
        how += ", normalized" if info.normalized else ", not normalized"
    else:
        how = f"activation {info.activation}"
    lines = [
        f"{info.name}: {info.task} on {info.device} as {info.dtype}, {how}, max {info.max_tokens} tokens",
        f"reference: {report.reference}; tolerance {report.tolerance:g}",
        *(f"note: {note}" for note in report.notes),
        "",
        f"{'#':>3}  {'probe':<44} {'prompt':<10} {'tokens':>6}  {report.measure:>10}  result",
    ]
    for i, r in enumerate(report.results, 1):
        verdict = "ok" if r.passed else "MISMATCH"
        lines.append(
            f"{i:>3}  {_clip(r.text):<44} {r.prompt or '-':<10} {r.tokens:>6}  {r.value:>10.6f}  {verdict}"
        )
    matched = sum(r.passed for r in report.results)
    lines += ["", f"{matched}/{len(report.results)} probes match" + ("" if report.passed else ": MISMATCH")]
    return "\n".join(lines)


def _clip(text: str, width: int = 44) -> str:
    shown = repr(text)[1:-1]
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value
