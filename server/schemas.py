"""Request and response models: the public contract, and what /docs shows."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_CHUNK_SIZE = 1_000_000


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "Convoy batches requests.", "chunk_size": 500}]},
    )

    text: str = Field(min_length=1, description="The document; it is split into chunks.")
    chunk_size: int = Field(default=500, gt=0, le=MAX_CHUNK_SIZE, description="Most characters in one chunk.")
    model: str | None = Field(default=None, description="Served model name; default: the first.")

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


class ModelCard(BaseModel):
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
