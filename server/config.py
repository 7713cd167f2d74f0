"""Settings: the one source of every knob, read from CLI flags and CONVOY_* environment variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

Task = Literal["embed", "classify"]
DType = Literal["auto", "float32", "float16", "bfloat16"]


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
        default=None, description="embed or classify; inferred from the model config when omitted."
    )
    device: str = Field(default="auto", description="auto (cuda if available), cpu, cuda, cuda:N.")
    dtype: DType = Field(default="auto", description="auto = float16 on CUDA, float32 on CPU.")
    torch_threads: int | None = Field(
        default=None, ge=1, le=256, description="CPU threads for torch; default: usable cores."
    )

    # --- batching ---
    max_batch_size: int = Field(default=32, ge=1, le=1024, description="Chunks per forward pass.")
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

    # --- HTTP ---
    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port to bind (0 = any free port).")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level of the server and uvicorn."
    )
    access_log: bool = Field(default=True, description="Log one line per request.")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not _DEVICE_RE.match(value):
            raise ValueError("must be auto, cpu, mps, cuda or cuda:N")
        return value

    # --- deployment: several models in one process, scale-out on Ray Serve ---
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="More models to serve beside --model: SOURCE or NAME=SOURCE each (env: comma-separated).",
    )
    models_file: Path | None = Field(
        default=None,
        description="TOML file listing models ([[models]] tables: name, source, task, device, dtype, "
        "max_batch_size, max_wait_ms, max_queue); unset keys take the flags' values.",
    )
    model_name: str | None = Field(
        default=None,
        description="Name clients use for --model; default: the path's last part or the hub id.",
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
    def _replica_bounds(self) -> Settings:
        if self.ray_max_replicas is not None and self.ray_max_replicas < self.ray_replicas:
            raise ValueError("ray_max_replicas must be at least ray_replicas")
        return self


def _split_list(value: Any) -> Any:
    """A comma-separated string (an env var) as a list; lists and anything else pass through."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value
