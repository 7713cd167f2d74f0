"""text-embeddings-inference-compatible routes: POST /embed, GET /info, and POST / (InferenceClient).

`huggingface_hub.InferenceClient(base_url=...)` posts `{"inputs": ...}` to the base URL itself, so
POST / answers by the served model's type: vectors for an embedding model, label scores for a
classifier. Label scores come in the Hugging Face Inference API's shape, a list per input even for
one string, with its `parameters` (`top_k`, `function_to_apply`): that is what
`InferenceClient.text_classification` parses (TEI's flat list for one string makes it return the
top label alone). /health lives with the other operational routes (routes/health.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Request
from starlette.responses import Response

from server import __version__
from server.api.compat import check_dimensions, embedding_rows, require_task, run_inputs
from server.api.compat_schemas import (
    ClassificationParameters,
    TEIClassification,
    TEIEmbeddingType,
    TEIInfo,
    TEIModelType,
    TEIRequest,
    TEIToken,
    TEITokenizeRequest,
)
from server.api.deps import RuntimeDep
from server.api.inputs import check_chars, check_inputs, refuse_rerank, resolve_prompt
from server.api.model_math import model_math, tei_pooling
from server.api.responses import FastJSONResponse, inference_response
from server.api.schemas import ERROR_RESPONSES, TIMEOUT_HEADER_DOC
from server.batching.backend import Backend, BackendInfo, ItemResult, TokenInspector
from server.config import Settings
from server.errors import InvalidInput

router = APIRouter(tags=["text-embeddings-inference"])

_HINT = 'shorten it, or send "truncate": true'


@router.post(
    "/embed",
    response_model=list[list[float]],
    responses=ERROR_RESPONSES,
    summary="TEI-compatible embeddings: one vector per input",
    openapi_extra=TIMEOUT_HEADER_DOC,
)
async def embed(body: TEIRequest, runtime: RuntimeDep, request: Request) -> Response:
    started = time.perf_counter()
    backend = runtime.backend()
    require_task(backend.info, "embed", "/embed")
    return await _embed(body, backend, runtime.settings, request, started)


@router.post(
    "/",
    response_model=list[list[float]] | list[list[TEIClassification]],
    responses=ERROR_RESPONSES,
    openapi_extra=TIMEOUT_HEADER_DOC,
    summary="TEI-compatible inference by model type (where huggingface_hub's InferenceClient posts)",
)
async def infer(body: TEIRequest, runtime: RuntimeDep, request: Request) -> Response:
    started = time.perf_counter()
    backend = runtime.backend()
    if backend.info.task == "embed":
        return await _embed(body, backend, runtime.settings, request, started)
    info = backend.info
    refuse_rerank(info, "POST /")
    results = await run_inputs(
        backend,
        body.inputs,
        runtime.settings,
        request,
        truncate=body.truncate,
        param="inputs",
        overflow_hint=_HINT,
        prompt=resolve_prompt(info, body.prompt_name),
    )
    parameters = body.parameters or ClassificationParameters()
    activation = "none" if body.raw_scores else parameters.function_to_apply
    scores = [_classification(info, r, activation, parameters.top_k) for r in results]
    return inference_response(request, scores, results, started, model=info.name)


async def _embed(
    body: TEIRequest, backend: Backend, settings: Settings, request: Request, started: float
) -> Response:
    info = backend.info
    check_dimensions(info, body.dimensions)
    results = await run_inputs(
        backend,
        body.inputs,
        settings,
        request,
        truncate=body.truncate,
        param="inputs",
        overflow_hint=_HINT,
        prompt=resolve_prompt(info, body.prompt_name),
    )
    rows = embedding_rows(
        results, dimensions=body.dimensions, normalize=body.normalize, model_normalized=info.normalized
    )
    return inference_response(request, rows, results, started, model=info.name)


def _classification(
    info: BackendInfo, result: ItemResult, activation: str | None, top_k: int | None
) -> list[dict[str, Any]]:
    """Labels with their scores, most likely first: the model's own activation unless asked otherwise."""
    scores = result.vector if activation is None or result.raw is None else _activate(result.raw, activation)
    order = np.argsort(-result.vector, kind="stable")[:top_k]
    return [{"label": info.labels[i], "score": float(scores[i])} for i in order]


def _activate(logits: npt.NDArray[np.float32], activation: str) -> npt.NDArray[np.float32]:
    if activation == "sigmoid":
        return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float32)
    if activation == "softmax":
        shifted = np.exp(logits - logits.max())
        return np.asarray(shifted / shifted.sum(), dtype=np.float32)
    return logits


@router.get(
    "/info",
    response_model=TEIInfo,
    response_model_exclude_none=True,
    summary="TEI-compatible description of the served model",
)
async def info(runtime: RuntimeDep) -> TEIInfo:
    settings = runtime.settings
    model = runtime.backend().info
    if model.task == "embed":
        model_type = TEIModelType(embedding=TEIEmbeddingType(pooling=tei_pooling(model.pooling or "mean")))
    else:
        labels: dict[str, dict[str, Any]] = {
            "id2label": {str(i): label for i, label in enumerate(model.labels)},
            "label2id": {label: i for i, label in enumerate(model.labels)},
        }
        model_type = (
            TEIModelType(reranker=labels) if model.task == "rerank" else TEIModelType(classifier=labels)
        )
    return TEIInfo(
        **model_math(model),
        model_id=model.name,
        model_dtype=model.dtype,
        model_type=model_type,
        device=model.device,
        max_batch_size=runtime.settings_for(model.name).max_batch_size or 0,
        max_input_length=model.max_tokens,
        max_client_batch_size=settings.max_embedding_inputs,
        max_concurrent_requests=settings.max_queue,
        version=__version__,
    )


@router.post(
    "/tokenize",
    response_model=list[list[TEIToken]],
    responses=ERROR_RESPONSES,
    summary="TEI-compatible: how the model's tokenizer cuts each input (ids, texts, offsets)",
)
async def tokenize(body: TEITokenizeRequest, runtime: RuntimeDep) -> Response:
    backend = runtime.backend()
    if not isinstance(backend, TokenInspector):
        raise InvalidInput(f"model {backend.info.name!r} has no tokenizer here", param="model")
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    if not texts:
        raise InvalidInput("inputs must not be empty", param="inputs")
    check_inputs(runtime.settings, len(texts), param="inputs")
    check_chars(runtime.settings, sum(len(t) for t in texts), param="inputs")
    prompt = resolve_prompt(backend.info, body.prompt_name)
    spans = await asyncio.to_thread(
        backend.tokenize, texts, add_special_tokens=body.add_special_tokens, prompt=prompt
    )
    return FastJSONResponse([[dataclasses.asdict(t) for t in tokens] for tokens in spans])
