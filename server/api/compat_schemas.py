"""Request and response models of the compatible APIs: OpenAI embeddings, text-embeddings-inference.

Unknown fields are ignored (not refused) here: clients of these APIs send fields Convoy has no
use for (`user`, provider hints), and refusing them would break the drop-in promise.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

# Text, several texts, one input as token ids, several inputs as token ids (OpenAI's four forms).
OpenAIInput = str | list[str] | list[StrictInt] | list[list[StrictInt]]


# ---- OpenAI ------------------------------------------------------------------------------------
class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [{"input": ["Convoy batches requests."], "model": "all-MiniLM-L6-v2"}]
        },
    )

    input: OpenAIInput = Field(
        description="Text, list of texts, token ids, or list of token-id lists (token ids only when the "
        "server runs with --token-ids accept; they must be in the served model's own vocabulary)."
    )
    model: str = Field(description="A served model's name (see GET /v1/models).")
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="float: JSON numbers; base64: little-endian float32 bytes."
    )
    dimensions: int | None = Field(
        default=None, gt=0, description="Keep the first N dimensions and renormalise (Matryoshka)."
    )
    user: str | None = Field(default=None, description="Accepted and ignored.")


class EmbeddingObject(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingObject]
    model: str
    usage: EmbeddingsUsage


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "convoy"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


# ---- text-embeddings-inference ------------------------------------------------------------------
class TEIRequest(BaseModel):
    """The body of TEI's /embed (and of POST /, which huggingface_hub's InferenceClient sends)."""

    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"inputs": "Convoy batches requests."}]}
    )

    inputs: str | list[str] = Field(description="One text or a list of texts.")
    normalize: bool = Field(default=True, description="Unit-length vectors (false: raw mean-pooled).")
    truncate: bool = Field(default=False, description="Cut inputs over the token limit instead of 400.")
    truncation_direction: Literal["right", "Right"] = Field(
        default="right", description="Only right truncation is supported."
    )
    dimensions: int | None = Field(default=None, gt=0, description="Keep the first N dimensions.")
    raw_scores: bool = Field(default=False, description="Classifiers: only probabilities (false) are served.")

    @field_validator("truncation_direction", mode="before")
    @classmethod
    def _right_only(cls, value: object) -> object:
        if isinstance(value, str) and value.lower() == "left":
            raise ValueError("only right truncation is supported")
        return value

    @field_validator("raw_scores")
    @classmethod
    def _probabilities_only(cls, value: bool) -> bool:
        if value:
            raise ValueError("raw scores are not served; classifiers answer probabilities")
        return value


class TEIClassification(BaseModel):
    label: str
    score: float


class TEIEmbeddingType(BaseModel):
    pooling: str


class TEIModelType(BaseModel):
    embedding: TEIEmbeddingType | None = None
    classifier: dict[str, dict[str, Any]] | None = None


class TEIInfo(BaseModel):
    model_id: str
    model_sha: str | None = None
    model_dtype: str
    model_type: TEIModelType
    device: str
    max_batch_size: int
    max_input_length: int
    max_client_batch_size: int
    max_concurrent_requests: int
    version: str
