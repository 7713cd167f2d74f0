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

from models.base import Encoded, TokenIdError
from server.api.cancellation import request_timeout_s
from server.api.inputs import CountingEncoder, check_chars, check_chunks, check_inputs, infer
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
    """`dimensions` only for Matryoshka models, and only to a size they were trained for (as vLLM)."""
    if dimensions is None or dimensions == info.dim:
        return
    if dimensions > info.dim:
        raise InvalidInput(
            f"dimensions={dimensions} is more than model {info.name!r} has ({info.dim})", param="dimensions"
        )
    allowed = info.matryoshka_dims
    if not allowed:
        raise InvalidInput(
            f"model {info.name!r} is not a Matryoshka model: its embeddings were not trained to be cut, "
            "so `dimensions` is refused (an operator who knows better can list the sizes with "
            "--matryoshka-dims)",
            param="dimensions",
        )
    if dimensions not in allowed:
        sizes = ", ".join(map(str, allowed)) if len(allowed) <= 16 else f"1..{info.dim}"
        raise InvalidInput(
            f"dimensions={dimensions} is not one model {info.name!r} was trained for ({sizes})",
            param="dimensions",
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
    prompt: str | None = None,
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
    # Room left for the text's own tokens, once the special tokens and the prompt are in.
    limit = max(1, info.max_text_tokens - backend.prompt_tokens(prompt))
    if ids is not None:
        texts = await _decode(backend, ids, limit, truncate=truncate, param=param, hint=overflow_hint)
    assert texts is not None
    for i, text in enumerate(texts):
        if not text:
            raise InvalidInput(f"{param}[{i}] is empty", param=f"{param}[{i}]")
    check_chars(settings, sum(len(t) for t in texts), param=param)
    encoded = None
    if not truncate and ids is None:
        encoded = await _check_token_limit(
            backend, texts, limit, param=param, hint=overflow_hint, prompt=prompt
        )
    return await infer(request, backend, texts, timeout_s, prompt=prompt, encoded=encoded)


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
    backend: Backend, texts: list[str], limit: int, *, param: str, hint: str, prompt: str | None
) -> list[Encoded | None] | None:
    """Refuse a text over `limit` tokens; the model inputs counting made, for `infer` (or None)."""
    # Every token covers at least one byte of UTF-8 (WordPiece, byte-level BPE), plus at most one
    # zero-width prefix token (SentencePiece): shorter texts cannot overflow, so only the others
    # are counted, off the event loop.
    suspects = [i for i, t in enumerate(texts) if 4 * len(t) >= limit and len(t.encode("utf-8")) >= limit]
    if not suspects:
        return None
    counter = CountingEncoder.of(backend, prompt)
    counts = await asyncio.to_thread(counter or backend.count_tokens, [texts[i] for i in suspects])
    for i, n in zip(suspects, counts, strict=True):
        if n > limit:
            raise _too_long(backend.info, i, n, param, hint)
    return None if counter is None else counter.inputs_for(texts)


def _too_long(info: BackendInfo, index: int, tokens: int, param: str, hint: str) -> InputTooLong:
    return InputTooLong(
        f"{param}[{index}] has {tokens} tokens; model {info.name!r} takes at most "
        f"{info.max_tokens - info.special_tokens} (plus {info.special_tokens} special tokens)"
        + (f": {hint}" if hint else ""),
        param=f"{param}[{index}]",
    )


def embedding_rows(
    results: Sequence[ItemResult],
    *,
    dimensions: int | None = None,
    normalize: bool | None = None,
    model_normalized: bool = True,
) -> list[npt.NDArray[np.float32]]:
    """Each result's vector, cut to `dimensions` Matryoshka-style.

    `normalize` None: the model's own output, unit-length exactly when it has a Normalize module
    (`model_normalized`), as sentence-transformers returns it. True: unit-length whatever the
    model (TEI's default); False: the vector before any Normalize module (TEI's raw vectors).
    A unit-length vector cut short is made unit-length again.
    """
    unit = model_normalized if normalize is None else normalize
    rows = []
    for r in results:
        vec = r.vector * np.float32(r.norm) if normalize is False and model_normalized else r.vector
        cut = dimensions is not None and dimensions < vec.shape[0]
        if cut:
            vec = vec[:dimensions]
        if unit and (cut or not model_normalized):
            norm = float(np.linalg.norm(vec))
            vec = vec / np.float32(norm) if norm > 0 else vec
        rows.append(vec.astype(np.float32, copy=False))
    return rows


def to_base64(vec: npt.NDArray[np.float32]) -> str:
    """OpenAI's base64 encoding: the little-endian float32 bytes of the vector."""
    return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
