"""Inputs of the compatible APIs (texts or token ids) -> checked texts -> the batcher -> shaped rows.

The OpenAI and text-embeddings-inference routes share this path; each input is one chunk (these
APIs do not split texts), so it goes through the same DynamicBatcher as /predict's chunks.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from starlette.requests import Request

from models.base import TokenIdError
from server.api.cancellation import request_timeout_s
from server.api.inputs import check_chars, check_chunks, check_inputs, infer
from server.batching.backend import Backend, BackendInfo, ItemResult, TokenDecoder
from server.config import Settings
from server.errors import InputTooLong, InvalidInput, TokenIdsNotAccepted

RawInput = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]


def require_task(info: BackendInfo, task: str, route: str) -> None:
    if info.task != task:
        raise InvalidInput(
            f"model {info.name!r} is a {info.task} model; {route} needs an {task} model", param="model"
        )


def check_dimensions(info: BackendInfo, dimensions: int | None) -> None:
    if dimensions is not None and dimensions > info.dim:
        raise InvalidInput(
            f"dimensions={dimensions} is more than model {info.name!r} has ({info.dim})", param="dimensions"
        )


async def run_inputs(
    backend: Backend,
    raw: RawInput,
    settings: Settings,
    request: Request,
    *,
    truncate: bool,
    param: str,
    overflow_hint: str = "",
) -> list[ItemResult]:
    """Check every limit, then queue one chunk per input; results come back in input order.

    Token ids are refused unless `settings.token_ids == "accept"` (ids of another tokenizer would
    silently embed other text). `truncate=False` refuses an input over the model's token limit
    with 400 naming its index (`param[i]`) and ending with `overflow_hint`; `truncate=True` lets
    the model cut it.
    As on /predict, the request's deadline (X-Request-Timeout) and its client's disconnect
    cancel its queued inputs.
    """
    timeout_s = request_timeout_s(request, settings)
    texts, ids = _split_kinds(raw, param)
    if ids is not None and settings.token_ids == "reject":
        raise _token_ids_refused(backend.info, param)
    count = len(texts if texts is not None else ids or [])
    if count == 0:
        raise InvalidInput(f"{param} must not be empty", param=param)
    check_inputs(settings, count, param=param)
    check_chunks(settings, count, param=param)
    info = backend.info
    limit = max(1, info.max_tokens - info.special_tokens)  # room left for the text's own tokens
    if ids is not None:
        texts = await _decode(backend, ids, limit, truncate=truncate, param=param, hint=overflow_hint)
    assert texts is not None
    for i, text in enumerate(texts):
        if not text:
            raise InvalidInput(f"{param}[{i}] is empty", param=f"{param}[{i}]")
    check_chars(settings, sum(len(t) for t in texts), param=param)
    if not truncate and ids is None:
        await _check_token_limit(backend, texts, limit, param=param, hint=overflow_hint)
    return await infer(request, backend, texts, timeout_s)


def _split_kinds(raw: RawInput, param: str) -> tuple[list[str] | None, list[list[int]] | None]:
    """Texts, or token-id lists. The schemas let through only one kind per request."""
    if isinstance(raw, str):
        return [raw], None
    texts: list[str] = []
    ids: list[list[int]] = []
    flat: list[int] = []
    for x in raw:
        if isinstance(x, str):
            texts.append(x)
        elif isinstance(x, int):
            flat.append(x)
        else:
            ids.append(list(x))
    if flat:
        ids.append(flat)  # one input given as a flat list of ids
    if texts and ids:
        raise InvalidInput(f"{param} mixes texts and token ids", param=param)
    return (None, ids) if ids else (texts, None)


def _token_ids_refused(info: BackendInfo, param: str) -> TokenIdsNotAccepted:
    return TokenIdsNotAccepted(
        f"{param} is token ids, which this server does not accept: ids must be in the served model's "
        f"own vocabulary ({info.name!r}), or they embed some other text. Send the texts instead. "
        "LangChain's OpenAIEmbeddings sends OpenAI (tiktoken) token ids unless it is created with "
        "check_embedding_ctx_length=False. Clients that tokenise with this model's own tokenizer "
        "can be let in with --token-ids accept (CONVOY_TOKEN_IDS=accept).",
        param=param,
    )


async def _decode(
    backend: Backend, ids: list[list[int]], limit: int, *, truncate: bool, param: str, hint: str
) -> list[str]:
    if not isinstance(backend, TokenDecoder):
        raise InvalidInput(f"model {backend.info.name!r} takes text only, not token ids", param=param)
    for i, row in enumerate(ids):
        if not row:
            raise InvalidInput(f"{param}[{i}] is empty", param=f"{param}[{i}]")
        if len(row) > limit:
            if not truncate:
                raise _too_long(backend.info, i, len(row), param, hint)
            ids[i] = row[:limit]
    try:
        # Token ids are read as the served model's own vocabulary, as vLLM does.
        return await asyncio.to_thread(backend.decode, ids)
    except TokenIdError as exc:
        raise InvalidInput(
            f"{param}[{exc.index}]: {exc}; token ids must be in model {backend.info.name!r}'s own "
            "vocabulary (OpenAI's tiktoken ids are not)",
            param=f"{param}[{exc.index}]",
        ) from None


async def _check_token_limit(
    backend: Backend, texts: list[str], limit: int, *, param: str, hint: str
) -> None:
    # Every token covers at least one byte of UTF-8 (WordPiece, byte-level BPE), plus at most one
    # zero-width prefix token (SentencePiece): shorter texts cannot overflow, so only the others
    # are counted, off the event loop.
    suspects = [i for i, t in enumerate(texts) if 4 * len(t) >= limit and len(t.encode("utf-8")) >= limit]
    if not suspects:
        return
    counts = await asyncio.to_thread(backend.count_tokens, [texts[i] for i in suspects])
    for i, n in zip(suspects, counts, strict=True):
        if n > limit:
            raise _too_long(backend.info, i, n, param, hint)


def _too_long(info: BackendInfo, index: int, tokens: int, param: str, hint: str) -> InputTooLong:
    return InputTooLong(
        f"{param}[{index}] has {tokens} tokens; model {info.name!r} takes at most "
        f"{info.max_tokens - info.special_tokens} (plus {info.special_tokens} special tokens)"
        + (f": {hint}" if hint else ""),
        param=f"{param}[{index}]",
    )


def embedding_rows(
    results: Sequence[ItemResult], *, dimensions: int | None = None, normalize: bool = True
) -> list[npt.NDArray[np.float32]]:
    """Each result's vector: kept unit-length (or scaled back to its raw length), then cut to
    `dimensions` Matryoshka-style and, when normalised, renormalised."""
    rows = []
    for r in results:
        vec = r.vector if normalize else r.vector * np.float32(r.norm)
        if dimensions is not None and dimensions < vec.shape[0]:
            vec = vec[:dimensions]
            if normalize:
                norm = float(np.linalg.norm(vec))
                vec = vec / np.float32(norm) if norm > 0 else vec
        rows.append(vec.astype(np.float32, copy=False))
    return rows


def to_base64(vec: npt.NDArray[np.float32]) -> str:
    """OpenAI's base64 encoding: the little-endian float32 bytes of the vector."""
    return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
