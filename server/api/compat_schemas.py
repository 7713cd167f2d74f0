"""Request and response models of the compatible APIs: OpenAI embeddings, text-embeddings-inference.

Unknown fields are ignored (not refused) here: clients of these APIs send fields Convoy has no
use for (`user`, provider hints), and refusing them would break the drop-in promise.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from server.api.schemas import ModelMath

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
        default=None,
        gt=0,
        description="Keep the first N dimensions and renormalise (Matryoshka models only).",
    )
    user: str | None = Field(default=None, description="Accepted and ignored.")
    prompt_name: str | None = Field(
        default=None,
        description="Convoy's extension (send it in `extra_body`): a prompt of the model's, e.g. "
        "'query', prepended as sentence-transformers does. Default: the model's default prompt.",
    )


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
class ClassificationParameters(BaseModel):
    """What huggingface_hub's `InferenceClient.text_classification` sends in `parameters`."""

    model_config = ConfigDict(extra="ignore")

    top_k: int | None = Field(default=None, ge=1, description="Only the K most likely labels.")
    function_to_apply: Literal["sigmoid", "softmax", "none"] | None = Field(
        default=None, description="The activation on the logits instead of the model's own."
    )


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
    dimensions: int | None = Field(
        default=None, gt=0, description="Keep the first N dimensions (Matryoshka models only)."
    )
    raw_scores: bool = Field(
        default=False, description="Classifiers: the logits instead of the scores after the activation."
    )
    prompt_name: str | None = Field(
        default=None,
        description="A prompt of the model's, e.g. 'query', prepended as sentence-transformers does.",
    )
    parameters: ClassificationParameters | None = Field(
        default=None, description="POST / on a classifier: `top_k` and `function_to_apply`."
    )

    @field_validator("truncation_direction", mode="before")
    @classmethod
    def _right_only(cls, value: object) -> object:
        return _right_truncation_only(value)


class TEIClassification(BaseModel):
    label: str
    score: float


class TEIEmbeddingType(BaseModel):
    pooling: str


class TEIModelType(BaseModel):
    embedding: TEIEmbeddingType | None = None
    classifier: dict[str, dict[str, Any]] | None = None
    reranker: dict[str, dict[str, Any]] | None = None


class TEIInfo(ModelMath):
    """TEI's /info, and Convoy's description of the model's math (pooling, prompts, ...)."""

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


class TEITokenizeRequest(BaseModel):
    """TEI's /tokenize: how the model's tokenizer cuts each input."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{"inputs": "Convoy batches."}]})

    inputs: str | list[str] = Field(description="One text or a list of texts.")
    add_special_tokens: bool = Field(default=True, description="Include [CLS], [SEP] and the like.")
    prompt_name: str | None = Field(
        default=None, description="A prompt of the model's, prepended as it would be for embedding."
    )


class TEIToken(BaseModel):
    id: int
    text: str
    special: bool
    start: int | None = Field(
        description="Character offset into the input (prompt included); null if special."
    )
    stop: int | None


# ---- rerank: text-embeddings-inference and Cohere / Jina -----------------------------------------
class TEIRerankRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"query": "What is Convoy?", "texts": ["A server.", "A truck."]}]},
    )

    query: str = Field(min_length=1, description="The query every text is scored against.")
    texts: list[str] = Field(min_length=1, description="The documents to score.")
    raw_scores: bool = Field(
        default=False, description="The logits instead of the scores after the activation."
    )
    return_text: bool = Field(default=False, description="Echo each document's text.")
    truncate: bool = Field(
        default=False,
        description="Accepted for compatibility: long documents are never truncated here; they are scored "
        "chunk by chunk, and score as their best chunk.",
    )
    truncation_direction: Literal["right", "Right"] = Field(default="right", description="Right only.")

    @field_validator("truncation_direction", mode="before")
    @classmethod
    def _right_only(cls, value: object) -> object:
        return _right_truncation_only(value)


class TEIRank(BaseModel):
    index: int
    score: float
    text: str | None = None
    start: int = Field(description="Convoy: where the best-scoring chunk of the document starts.")
    end: int = Field(description="Convoy: where it ends (characters).")


class RerankDocument(BaseModel):
    text: str


class RerankRequest(BaseModel):
    """Cohere's and Jina's rerank body (the shape RAG frameworks' rerank clients send)."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [{"query": "What is Convoy?", "documents": ["A server.", "A truck."], "top_n": 1}]
        },
    )

    model: str | None = Field(default=None, description="A served rerank model's name; default: the first.")
    query: str = Field(min_length=1, description="The query every document is scored against.")
    documents: list[str | RerankDocument] = Field(
        min_length=1, description='Texts, or {"text": ...} objects.'
    )
    top_n: int | None = Field(default=None, gt=0, description="Return only the best N (default: all).")
    return_documents: bool = Field(default=True, description='Echo each document as {"text": ...}.')


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None
    start: int = Field(description="Convoy: where the best-scoring chunk of the document starts.")
    end: int = Field(description="Convoy: where it ends (characters).")


class RerankUsage(BaseModel):
    total_tokens: int


class RerankResponse(BaseModel):
    id: str | None = None
    model: str
    results: list[RerankResult]
    usage: RerankUsage


def _right_truncation_only(value: object) -> object:
    if isinstance(value, str) and value.lower() == "left":
        raise ValueError("only right truncation is supported")
    return value
