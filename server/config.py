"""Settings: the one source of every knob, read from CLI flags and CONVOY_* environment variables."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

Task = Literal["embed", "classify", "rerank"]
DType = Literal["auto", "float32", "float16", "bfloat16"]
# A list from the environment as a JSON array or a comma-separated string (see _url_list).
UrlList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Everything Convoy can be told. Build it once in the CLI (or a test) and pass it down."""

    model_config = SettingsConfigDict(env_prefix="CONVOY_", extra="forbid", frozen=True)

    # --- model ---
    model: str | None = Field(
        default=None,
        description="Local path or Hugging Face hub id; empty serves the packaged all-MiniLM-L6-v2. "
        "Repeat the flag to serve several models (NAME=SOURCE names one).",
        json_schema_extra={"cli_repeatable": True},
    )
    task: Task | None = Field(
        default=None,
        description="embed, classify or rerank; inferred from the model's files when omitted "
        "(rerank: a sentence-transformers CrossEncoder folder, or a one-logit classifier).",
    )
    pooling: str | None = Field(
        default=None,
        description="Override the embedding model's pooling (cls, mean, max, mean_sqrt_len_tokens, "
        "weightedmean, lasttoken; several joined with +); default: what its modules.json says.",
    )
    default_prompt_name: str | None = Field(
        default=None,
        description="Prompt (by name, from the model's config_sentence_transformers.json) applied "
        "when a request names none; default: the model's own default_prompt_name.",
    )
    default_prompt: str | None = Field(
        default=None,
        description="Prompt text applied when a request names none (wins over --default-prompt-name).",
    )
    matryoshka_dims: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="Dimensions `dimensions` may cut embeddings to (comma-separated), for Matryoshka "
        "models whose config.json does not list them; otherwise `dimensions` is refused.",
    )
    device: str = Field(default="auto", description="auto (cuda if available), cpu, cuda, cuda:N.")
    dtype: DType = Field(default="auto", description="auto = float16 on CUDA, float32 on CPU.")
    torch_threads: int | None = Field(
        default=None, ge=1, le=256, description="CPU threads for torch; default: usable cores."
    )

    # --- batching ---
    max_batch_size: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Chunks per forward pass; default 32 on CPU, 1024 on GPU (where the token budget, "
        "not a count, should bind).",
    )
    max_batch_tokens: int | None = Field(
        default=None,
        ge=1,
        le=1 << 24,
        description="Padded tokens per forward pass (batch size x longest input); default 2048 on CPU, "
        "where every padded token costs compute, 16384 on GPU.",
    )
    max_wait_ms: float = Field(
        default=5.0,
        ge=0,
        le=1000,
        description="Longest an idle model waits for a batch to fill (only when more work is due).",
    )
    max_queue: int = Field(
        default=4096, ge=1, le=1_000_000, description="Chunks waiting; beyond it requests get 503."
    )

    # --- reliability ---
    request_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Deadline of a request (X-Request-Timeout may lower or raise it up to max).",
    )
    max_request_timeout_s: float = Field(
        default=300.0, gt=0, le=3600, description="Largest deadline a client may ask for."
    )
    drain_timeout_s: float = Field(
        default=30.0, ge=0, le=3600, description="On SIGTERM, how long accepted work may take to finish."
    )
    unhealthy_exit_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="A model unhealthy this long (a failed device, a dead batcher) makes `convoy serve` "
        "exit non-zero (status 3) so its supervisor restarts it.",
    )

    # --- HTTP ---
    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port to bind (0 = any free port).")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level of the server and uvicorn."
    )
    keep_alive_s: int = Field(
        default=75,
        ge=1,
        le=3600,
        description="Idle keep-alive connections are closed after this; longer than clients' pools so "
        "a client never reuses a connection the server is closing.",
    )
    header_timeout_s: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="A request (headers and body) must fully arrive within this, counted from the "
        "connection's opening or the first byte of a next keep-alive request; else the connection is "
        "closed. Raise it for large bodies over slow links.",
    )
    max_connections: int | None = Field(
        default=2048,
        ge=1,
        le=1_000_000,
        description="Most open connections; beyond it a new one is answered 503 + Retry-After at once. "
        "Keep it below the process's file-descriptor limit (ulimit -n).",
    )
    access_log: bool = Field(default=True, description="Log one line per request.")

    @field_validator("pooling")
    @classmethod
    def _known_pooling(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from models.errors import ModelLoadError
        from models.st_config import parse_pooling  # config files only: no torch

        try:
            return "+".join(parse_pooling(value))
        except ModelLoadError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("matryoshka_dims", mode="before")
    @classmethod
    def _dims(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):  # repeated CLI flags
            return [part.strip() for v in value for part in v.split(",") if part.strip()]
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not _DEVICE_RE.match(value):
            raise ValueError("must be auto, cpu, mps, cuda or cuda:N")
        return value

    # --- remote upstreams (server/remote/, /process, --backend remote) ---
    backend: Literal["local", "remote"] = Field(
        default="local",
        description="local: a model in this process; remote: the --remote-url upstreams serve /predict.",
    )
    remote_url: UrlList = Field(
        default_factory=list,
        description="Upstream URL(s) of --backend remote (repeat the flag; env: JSON array or a,b).",
    )
    remote_format: Literal["plain", "openai"] = Field(
        default="plain",
        description='plain: POST {"text": chunk} to each URL; openai: URL is a base, POST {base}/embeddings.',
    )
    remote_model: str = Field(
        default="remote", description="Name of the remote model: shown by /models, sent as openai `model`."
    )
    remote_allow: UrlList = Field(
        default_factory=list,
        description="URL prefixes /process may call (repeat the flag; env: JSON array or a,b). Empty: none.",
    )
    remote_concurrency: int = Field(
        default=16, ge=1, le=4096, description="Most requests in flight to one upstream URL."
    )
    remote_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Longest a chunk may take at its upstream, retries included.",
    )
    remote_retries: int = Field(
        default=2, ge=0, le=10, description="Retries after a connection error, 429 or 5xx (never after 4xx)."
    )
    remote_backoff_s: float = Field(
        default=0.1,
        ge=0,
        le=60,
        description="First retry delay, doubled per retry, unless Retry-After says.",
    )

    @field_validator("remote_url", "remote_allow", mode="before")
    @classmethod
    def _url_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("remote_url", "remote_allow")
    @classmethod
    def _valid_urls(cls, value: list[str]) -> list[str]:
        from server.remote.allowlist import AllowList  # parses and checks each entry

        AllowList(value)
        return value

    @model_validator(mode="after")
    def _remote_backend_has_upstreams(self) -> Settings:
        if self.backend == "remote" and not self.remote_url:
            raise ValueError("--backend remote needs at least one --remote-url (CONVOY_REMOTE_URL)")
        return self

    # --- ecosystem: compatible APIs, security, CORS, limits, access logs (server/security.py,
    # server/api/inputs.py, server/api/routes/openai.py, server/api/routes/tei.py) ---
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="API keys accepted as `Authorization: Bearer <key>` (comma-separated in the env var).",
    )
    jwt_secret: SecretStr | None = Field(default=None, description="HS256 secret for JWT bearer tokens.")
    jwt_public_key: str | None = Field(
        default=None,
        description="PEM public key (the text, or a path to a file) for RS256/ES256 JWT bearer tokens.",
    )
    jwt_audience: str | None = Field(default=None, description="Required `aud` claim of JWTs, when set.")
    jwt_issuer: str | None = Field(default=None, description="Required `iss` claim of JWTs, when set.")
    jwt_leeway_s: float = Field(
        default=0.0, ge=0, le=300, description="Clock skew tolerated on exp/nbf/iat, in seconds."
    )
    metrics_require_auth: bool = Field(
        default=False, description="Require credentials on /metrics too (it is open by default)."
    )
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS (comma-separated); empty: no CORS."
    )
    cors_allow_methods: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["GET", "POST"], description="Methods allowed by CORS (comma-separated)."
    )
    cors_allow_headers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["Authorization", "Content-Type", "X-Request-ID"],
        description="Request headers allowed by CORS (comma-separated).",
    )
    cors_allow_credentials: bool = Field(
        default=False, description="Let browsers send cookies/credentials (never with origin '*')."
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, le=1 << 31, description="Largest request body; beyond it 413."
    )
    max_request_chars: int = Field(
        default=1_000_000, ge=1, le=100_000_000, description="Most characters of text in one request."
    )
    max_request_chunks: int = Field(
        default=2048, ge=1, le=1_000_000, description="Most chunks (model inputs) one request may make."
    )
    max_embedding_inputs: int = Field(
        default=2048, ge=1, le=1_000_000, description="Most inputs in one /v1/embeddings or /embed request."
    )
    token_ids: Literal["reject", "accept"] = Field(
        default="reject",
        description="/v1/embeddings inputs given as token ids: reject (400) or accept, read in the served "
        "model's own vocabulary. Accept only for clients that tokenise with the model's own tokenizer: "
        "LangChain's OpenAIEmbeddings sends OpenAI (tiktoken) ids unless check_embedding_ctx_length=False.",
    )
    embeddings_overflow: Literal["reject", "truncate"] = Field(
        default="reject",
        description="/v1/embeddings inputs over the model's token limit: reject (400) or truncate.",
    )
    debug: bool = Field(
        default=False,
        description="Debug logging. Responses never carry a traceback, debug or not.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Access log format: text (uvicorn's) or json (one JSON object a line)."
    )

    @field_validator(
        "api_keys", "cors_allow_origins", "cors_allow_methods", "cors_allow_headers", mode="before"
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # Env vars arrive as one string, CLI flags (append) as a list of strings: both may hold
        # comma-separated items. Anything else (SecretStr from Python callers) passes as is.
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            return value
        out: list[object] = []
        for item in value:
            if isinstance(item, str):
                out.extend(part.strip() for part in item.split(",") if part.strip())
            else:
                out.append(item)
        return out

    @model_validator(mode="after")
    def _cors_credentials_need_explicit_origins(self) -> Settings:
        if self.cors_allow_credentials and "*" in self.cors_allow_origins:
            raise ValueError(
                "cors_allow_origins '*' cannot be combined with cors_allow_credentials: "
                "list the allowed origins explicitly"
            )
        return self

    # --- deployment: several models in one process, scale-out on Ray Serve ---
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="More models to serve beside --model: SOURCE or NAME=SOURCE each (env: comma-separated).",
    )
    models_file: Path | None = Field(
        default=None,
        description="TOML file listing models ([[models]] tables: name, source, task, device, dtype, "
        "max_batch_size, max_batch_tokens, max_wait_ms, max_queue, pooling, default_prompt_name, "
        "default_prompt, matryoshka_dims); unset keys take the flags' values.",
    )
    model_name: str | None = Field(
        default=None,
        description="Name clients use for --model; default: the path's last part or the hub id.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=256,
        description="HTTP front-end processes (2 or more: they tokenise and hand token ids to one engine "
        "process that owns the models and batches across them all). For GPU hosts, where one Python "
        "process caps requests/s; 1 serves in one process.",
    )
    ray: bool = Field(default=False, description="Serve through Ray Serve (needs convoy[ray]).")
    ray_address: str | None = Field(
        default=None, description="Ray cluster to join (e.g. auto); default: RAY_ADDRESS or a new local Ray."
    )
    ray_replicas: int = Field(
        default=1, ge=1, le=4096, description="Ray Serve replicas (the minimum when autoscaling)."
    )
    ray_max_replicas: int | None = Field(
        default=None, ge=1, le=4096, description="Autoscale up to this many replicas on ongoing requests."
    )
    ray_target_ongoing_requests: float = Field(
        default=32.0, gt=0, le=100_000, description="Autoscaling target: ongoing requests per replica."
    )
    ray_max_ongoing_requests: int = Field(
        default=256, ge=1, le=100_000, description="Requests one replica takes at once (feeds its batcher)."
    )
    ray_num_gpus: float | None = Field(
        default=None, ge=0, le=64, description="GPUs per replica; default: 1 when --device is cuda, else 0."
    )

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        return _split_list(value)

    @model_validator(mode="before")
    @classmethod
    def _spread_repeated_model(cls, data: Any) -> Any:
        # `--model a --model b` arrives as a list: the first stays `model`, the rest join `models`,
        # so `model` keeps its plain-string type (CONVOY_MODEL=/path, code that reads it).
        if isinstance(data, dict) and isinstance(data.get("model"), list | tuple):
            first, *rest = data["model"] or [None]
            data = {**data, "model": first, "models": [*rest, *_split_list(data.get("models"))]}
        return data

    @model_validator(mode="after")
    def _workers_serve_local_models(self) -> Settings:
        if self.workers > 1 and (self.backend == "remote" or self.ray):
            way = "--ray" if self.ray else "--backend remote"
            raise ValueError(
                f"--workers {self.workers} runs local models only; it cannot be combined with {way}"
            )
        return self

    @model_validator(mode="after")
    def _replica_bounds(self) -> Settings:
        if self.ray_max_replicas is not None and self.ray_max_replicas < self.ray_replicas:
            raise ValueError("ray_max_replicas must be at least ray_replicas")
        return self


def _split_list(value: Any) -> Any:
    """Comma-separated strings (an env var, or each repeated CLI flag) as one flat list."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        return value
    return [part.strip() for item in value for part in str(item).split(",") if part.strip()]
