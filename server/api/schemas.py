"""Convoy's own contract (/predict, /stream, /ws, /process, operations): what /docs shows.

The OpenAI and text-embeddings-inference contracts live in compat_schemas.py.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from server.chunking import MAX_CHUNK_SIZE
from server.remote.allowlist import BadUpstreamUrl, parse_upstream_url

MAX_API_URLS = 256


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "Convoy batches requests.", "chunk_size": 500}]},
    )

    text: str = Field(min_length=1, description="The document; it is split into chunks.")
    chunk_size: int = Field(default=500, gt=0, le=MAX_CHUNK_SIZE, description="Most characters in one chunk.")
    model: str | None = Field(default=None, description="Served model name; default: the first.")
    prompt_name: str | None = Field(
        default=None,
        description="A prompt of the model's (config_sentence_transformers.json), e.g. 'query': "
        "prepended as sentence-transformers does. Default: the model's default prompt, if any.",
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if value.isspace():
            raise ValueError("text must contain something other than whitespace")
        return value


class ChunkPrediction(BaseModel):
    """One chunk's result. `embedding` for embed models; `label`/`score`/`scores` for classify;
    `result` (the upstream's JSON answer) for `--backend remote --remote-format plain`."""

    index: int
    start: int
    end: int
    tokens: int
    embedding: list[float] | None = None
    label: str | None = None
    score: float | None = None
    scores: dict[str, float] | None = None
    result: Any | None = None


class Aggregate(BaseModel):
    """The document-level result: token-weighted mean over the chunks."""

    embedding: list[float] | None = None
    label: str | None = None
    score: float | None = None
    scores: dict[str, float] | None = None


class PredictResponse(BaseModel):
    model: str
    task: str
    chunks: int
    predictions: list[ChunkPrediction]
    aggregate: Aggregate


class ModelMath(BaseModel):
    """What a model computes, as its own files say (and `convoy verify` checks): /models and /info."""

    pooling: str | None = Field(
        default=None, description="Embedding models: pooling mode(s), '+'-joined when concatenated."
    )
    pooling_source: str | None = Field(
        default=None, description="Where the pooling came from: modules.json, override, or a default."
    )
    normalized: bool | None = Field(
        default=None, description="Embeddings are unit-length (a Normalize module)."
    )
    dense_layers: int | None = Field(default=None, description="Dense modules applied after pooling.")
    activation: str | None = Field(
        default=None, description="Classifiers and rerankers: softmax, sigmoid or none (logits)."
    )
    prompts: dict[str, str] | None = Field(default=None, description="Prompts by name (prompt_name).")
    default_prompt_name: str | None = None
    default_prompt: str | None = Field(default=None, description="Applied when a request names no prompt.")
    matryoshka_dimensions: list[int] | None = Field(
        default=None, description="Sizes `dimensions` may cut embeddings to; absent: not a Matryoshka model."
    )


class ModelCard(ModelMath):
    name: str
    task: str
    device: str
    dtype: str
    max_batch_size: int
    max_tokens: int
    labels: list[str] | None = None


class ModelsResponse(BaseModel):
    models: list[ModelCard]


class StatusResponse(BaseModel):
    status: str


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (400, "Invalid input"),
        (401, "Missing or invalid credentials (when auth is configured)"),
        (413, "Request body too large"),
        (422, "Validation failed, or the model failed on an input"),
        (503, "Overloaded, loading or shutting down (see Retry-After)"),
        (504, "Deadline exceeded"),
    )
}

# --- OpenAPI declarations checked by the schemathesis fuzz (tests/integration/test_fuzz.py) ---
# Routes behind RequireAuth that do not declare ERROR_RESPONSES (GET /models, /v1/models, /info...).
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: ERROR_RESPONSES[401]}
MODEL_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "The named model is not served here"}
}


def json_errors(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """`responses` documented as JSON even on a route whose own media type is not (/stream's SSE).

    FastAPI files a `model` under the route's response class media type; errors are always
    JSON, so they point at the ErrorResponse component (registered by the JSON routes) directly.
    """
    return {
        status: {
            "description": spec["description"],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
        }
        for status, spec in responses.items()
    }


# X-Request-Timeout is read by server/cancellation.py, not by a handler argument; this documents it.
TIMEOUT_HEADER_DOC: dict[str, Any] = {
    "parameters": [
        {
            "name": "X-Request-Timeout",
            "in": "header",
            "required": False,
            "description": "Deadline of this request in seconds (default CONVOY_REQUEST_TIMEOUT_S, "
            "at most CONVOY_MAX_REQUEST_TIMEOUT_S); past it the answer is 504.",
            "schema": {"type": "number", "exclusiveMinimum": 0},
        }
    ]
}


# ---- /process, /stream and /ws ------------------------------------------------------------------
class ProcessRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "text": "A long document to send to remote APIs, chunk by chunk.",
                    "chunk_size": 500,
                    "api_urls": ["http://10.0.0.5:9000/analyze"],
                }
            ]
        },
    )

    text: str = Field(min_length=10, description="The document; it is split into chunks.")
    chunk_size: int = Field(default=500, gt=0, le=MAX_CHUNK_SIZE, description="Most characters in one chunk.")
    api_urls: list[str] = Field(
        min_length=1,
        max_length=MAX_API_URLS,
        description="Upstreams, called round-robin; each must match a prefix in CONVOY_REMOTE_ALLOW.",
    )

    @field_validator("api_urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            try:
                parse_upstream_url(url)
            except BadUpstreamUrl as exc:
                raise ValueError(str(exc)) from None
        return urls


class ProcessResult(BaseModel):
    """One chunk: `result` is the upstream's JSON on success, `error` says why not otherwise."""

    index: int
    url: str = Field(description="The upstream called, normalised.")
    success: bool
    result: Any | None = None
    error: str | None = None
    latency_ms: float = Field(description="First attempt sent to final answer, retries included.")


class ProcessResponse(BaseModel):
    total: int
    successful: int
    failed: int
    results: list[ProcessResult]


class WsRequest(PredictRequest):
    """One /ws message: a /predict body, plus an optional `id` echoed on every event it causes."""

    id: str | int | None = Field(default=None, description="Echoed on this message's events.")


def _component(name: str) -> dict[str, Any]:
    # Registered by /predict's response model (ChunkPrediction, Aggregate) and its errors.
    return {"$ref": f"#/components/schemas/{name}"}


def _json_string(schema: dict[str, Any]) -> dict[str, Any]:
    """An SSE `data` field: a string holding JSON that matches `schema`."""
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": schema}


_SPAN: dict[str, Any] = {
    "index": {"type": "integer"},
    "start": {"type": "integer"},
    "end": {"type": "integer"},
}

# One Server-Sent Event of /stream (OpenAPI 3.1: the media type's schema describes each event).
STREAM_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "oneOf": [
        {
            "properties": {
                "event": {"const": "chunk"},
                "data": _json_string(
                    {
                        "anyOf": [
                            _component("ChunkPrediction"),
                            {
                                "type": "object",
                                "required": ["index", "start", "end", "error"],
                                "properties": {**_SPAN, "error": _component("ErrorDetail")},
                            },
                        ]
                    }
                ),
            }
        },
        {
            "properties": {
                "event": {"const": "done"},
                "data": _json_string(
                    {
                        "type": "object",
                        "required": ["model", "task", "chunks", "successful", "failed", "aggregate"],
                        "properties": {
                            "model": {"type": "string"},
                            "task": {"type": "string"},
                            "chunks": {"type": "integer"},
                            "successful": {"type": "integer"},
                            "failed": {"type": "integer"},
                            "aggregate": {"anyOf": [_component("Aggregate"), {"type": "null"}]},
                        },
                    }
                ),
            }
        },
        {
            # Instead of `done` when the request's deadline passes: the chunks not yet answered
            # were cancelled.
            "properties": {
                "event": {"const": "error"},
                "data": _json_string(_component("ErrorResponse")),
            }
        },
    ],
}
