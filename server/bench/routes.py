"""What the bench sends to each route and how it judges each answer's shape.

A correct answer yields (chunks, tokens); anything else raises `Malformed` with a kind that the
report counts as an error: `bad_json` (not JSON at all), `bad_shape` (JSON, but not the route's
contract) or `upstream_failed` (/process answered, but some chunks failed upstream).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from server.chunking import split_text


class Malformed(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Payload:
    """A pre-serialised request body and what a correct answer must hold."""

    body: bytes
    inputs: int = 1


@dataclass(frozen=True, slots=True)
class BuildOptions:
    chunk_size: int
    model_name: str | None = None
    api_urls: tuple[str, ...] = ()


Builder = Callable[[str, BuildOptions], Payload]
Checker = Callable[[Any, Payload], tuple[int, int | None]]


@dataclass(frozen=True, slots=True)
class RouteSpec:
    path: str
    build: Builder
    check: Checker
    reports_tokens: bool


def parse_json(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise Malformed("bad_json", f"not JSON: {exc}") from None


def _shape(ok: bool, detail: str) -> None:
    if not ok:
        raise Malformed("bad_shape", detail)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _counted_rows(doc: Any, count_key: str, rows_key: str) -> tuple[int, list[Any]]:
    """A JSON object whose `rows_key` list holds exactly `count_key` (>= 1) rows."""
    _shape(isinstance(doc, dict), "the body is not a JSON object")
    count, rows = doc.get(count_key), doc.get(rows_key)
    _shape(_is_int(count) and count >= 1, f"`{count_key}` is {count!r}")
    _shape(isinstance(rows, list) and len(rows) == count, f"`{rows_key}` does not hold {count} rows")
    return count, rows


# ---- /predict ------------------------------------------------------------------------------
def build_predict(text: str, opts: BuildOptions) -> Payload:
    return Payload(orjson.dumps({"text": text, "chunk_size": opts.chunk_size}))


def check_predict(doc: Any, payload: Payload) -> tuple[int, int | None]:
    """200 with `predictions` of length `chunks`, each with its tokens and an embedding or label."""
    chunks, preds = _counted_rows(doc, "chunks", "predictions")
    tokens = 0
    for row in preds:
        _shape(isinstance(row, dict), "a prediction is not an object")
        emb, label, n = row.get("embedding"), row.get("label"), row.get("tokens")
        has_result = (isinstance(emb, list) and bool(emb)) or isinstance(label, str)
        _shape(has_result, "a prediction has no result")
        _shape(_is_int(n) and n >= 0, "a prediction has no `tokens` count")
        tokens += n
    _shape(isinstance(doc.get("aggregate"), dict), "no `aggregate`")
    return chunks, tokens


# ---- /v1/embeddings ------------------------------------------------------------------------
def build_embeddings(text: str, opts: BuildOptions) -> Payload:
    # A text longer than one chunk goes as a list of its chunks, the way a client batches them.
    pieces = [c.text for c in split_text(text, opts.chunk_size)]
    body: dict[str, Any] = {"input": pieces if len(pieces) > 1 else text}
    if opts.model_name:
        body["model"] = opts.model_name
    return Payload(orjson.dumps(body), inputs=len(pieces))


def check_embeddings(doc: Any, payload: Payload) -> tuple[int, int | None]:
    """OpenAI's shape: `data` holds one embedding per input, indexed 0..n-1; `usage` counts tokens."""
    _shape(isinstance(doc, dict), "the body is not a JSON object")
    data = doc.get("data")
    _shape(
        isinstance(data, list) and len(data) == payload.inputs, f"`data` does not hold {payload.inputs} rows"
    )
    seen = set()
    for row in data:
        _shape(isinstance(row, dict), "a `data` row is not an object")
        emb = row.get("embedding")
        _shape(bool(emb) and isinstance(emb, list | str), "a `data` row has no embedding")
        seen.add(row.get("index"))
    _shape(seen == set(range(payload.inputs)), "`data` indexes are not 0..n-1")
    usage = doc.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    _shape(_is_int(tokens), "no `usage.prompt_tokens`")
    return payload.inputs, tokens


# ---- /process ------------------------------------------------------------------------------
def build_process(text: str, opts: BuildOptions) -> Payload:
    body = {"text": text, "chunk_size": opts.chunk_size, "api_urls": list(opts.api_urls)}
    return Payload(orjson.dumps(body))


def check_process(doc: Any, payload: Payload) -> tuple[int, int | None]:
    """`results` holds `total` rows; any failed chunk makes the request an error."""
    total, results = _counted_rows(doc, "total", "results")
    failed = 0
    for row in results:
        _shape(isinstance(row, dict) and isinstance(row.get("success"), bool), "a result has no `success`")
        failed += not row["success"]
    if failed:
        raise Malformed("upstream_failed", f"{failed} of {total} chunks failed upstream")
    return total, None


ROUTES: dict[str, RouteSpec] = {
    "/predict": RouteSpec("/predict", build_predict, check_predict, reports_tokens=True),
    "/v1/embeddings": RouteSpec("/v1/embeddings", build_embeddings, check_embeddings, reports_tokens=True),
    "/process": RouteSpec("/process", build_process, check_process, reports_tokens=False),
}


def build_payloads(spec: RouteSpec, texts: Sequence[str], opts: BuildOptions) -> list[Payload]:
    """Serialise every body once, before the clock starts."""
    return [spec.build(text, opts) for text in texts]
