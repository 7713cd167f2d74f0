"""Request and response models of /process, /stream and /ws (the remote and streaming contract)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from server.allowlist import BadUpstreamUrl, parse_upstream_url
from server.schemas import MAX_CHUNK_SIZE, PredictRequest

MAX_API_URLS = 256


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


_SPAN = {"index": {"type": "integer"}, "start": {"type": "integer"}, "end": {"type": "integer"}}

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
    ],
}
