"""The one settings object. It is the only reader of the process environment (prefix ``TRACETUNE_``)."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("tracetune", appauthor=False))


class Settings(BaseSettings):
    """Every setting of tracetune; each is read from ``TRACETUNE_<NAME>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="TRACETUNE_", extra="ignore")

    home: Path = Field(
        default_factory=_default_home,
        description="Data home: the SQLite database, uploaded files, adapters and checkpoints live under it.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the store. Default: sqlite:///$TRACETUNE_HOME/tracetune.db. "
        "Use postgresql+psycopg://user:pass@host/db to share the store between machines.",
    )
    blob_url: str | None = Field(
        default=None,
        description="Object store that shares blobs (uploaded files, attachments, adapters, checkpoints) between "
        "machines, as an fsspec URL (s3://bucket/prefix with the `s3` extra). Default: none, the data home only.",
    )
    blob_options: dict[str, object] = Field(
        default_factory=dict,
        description="fsspec storage options of TRACETUNE_BLOB_URL (a JSON object in the environment), e.g. "
        '{"endpoint_url": "http://minio:9000", "key": "...", "secret": "..."} for an S3-compatible server.',
    )
    host: str = Field(default="127.0.0.1", description="Address `tracetune serve` binds to.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port `tracetune serve` listens on.")
    max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted (after zstd decompression too); larger bodies get 413.",
    )
    sqlite_synchronous: str = Field(
        default="FULL",
        pattern="^(FULL|NORMAL|EXTRA)$",
        description="SQLite `synchronous` pragma. FULL makes every acknowledged write survive power loss; "
        "NORMAL survives a process crash only.",
    )
    grader_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible API (ending in /v1) that score_model and label_model graders call, and that "
        "automations evaluate their candidate and current models on. Default: this tracetune server itself "
        "(http://HOST:PORT/v1), which serves the base model and every fine-tuned one.",
    )
    grader_api_key: str | None = Field(
        default=None,
        description="API key sent to the grader API. Default: none for training jobs; on the graders API, the "
        "caller's own key.",
    )
    log_level: str = Field(default="info", description="Log level of the server (debug, info, warning, error).")
    run_jobs: bool = Field(
        default=True,
        description="Whether `tracetune serve` runs fine-tuning jobs itself. Set false when `tracetune worker` "
        "processes (other machines sharing the PostgreSQL store and the home) run them.",
    )
    job_stale_after_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds without a heartbeat after which a running job's worker is taken for dead and "
        "another worker resumes the job from its last checkpoint.",
    )
    run_automations: bool = Field(
        default=True,
        description="Whether `tracetune serve` fires automations (a light thread: it builds each firing's dataset, "
        "waits for its fine-tuning job, wherever jobs run — here with `run_jobs`, or in `tracetune worker` "
        "processes — and evaluates through this server's /v1). Servers sharing a store may all fire: a firing is "
        "held by one at a time.",
    )
    automation_poll_s: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between checks of the automations' triggers (new matching runs, schedules) by the "
        "server's automation runner (`run_automations`).",
    )
    job_max_attempts: int = Field(
        default=3,
        ge=1,
        description="Training starts per job: a training process that dies (killed, out of memory) is restarted "
        "from the last checkpoint until this many attempts were made, then the job fails.",
    )
    fine_tune_max_file_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1,
        description="Largest training or validation file a fine-tuning job accepts (OpenAI's limit: 512 MB).",
    )

    engine: Literal["auto", "llamacpp", "vllm", "transformers"] = Field(
        default="auto",
        description="Inference engine of `tracetune serve`: `llamacpp` (llama.cpp on the model's GGUF file, "
        "fine-tuned models as GGUF LoRA adapters; the CPU default), `vllm` (GPU: vLLM with LoRA, the `vllm` "
        "extra), `transformers` (the reference engine; any Hugging Face directory), or `auto`: vLLM where it is "
        "installed and CUDA is present, else llama.cpp for GGUF models when it is installed, else transformers.",
    )
    llamacpp_weights: Literal["q8_0", "as-shipped"] = Field(
        default="q8_0",
        description="What the llama.cpp engine loads for a GGUF model: `q8_0` (a Q4_1 file re-quantized once to Q8_0 "
        "into the data home, ~4 s: llama.cpp's matrix kernels cover Q8_0, not Q4_1, so prompts and batches run "
        "faster; other files as they are) or `as-shipped` (the file itself).",
    )
    engine_threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads of each inference engine. Default: one on a machine with 2 cores or fewer "
        "(measured best under load: more threads than free cores spin against each other), else half the "
        "cores this process may use.",
    )
    train_threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads of each training process (torch, OpenMP, MKL). Default: the usable cores, less "
        "the serving engine's threads when the job runs inside `tracetune serve` (one on a 2-core machine).",
    )

    model_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Model aliases, NAME → MODEL (a JSON object in the environment): a request, or a fine-tuning job, "
        "that names NAME uses MODEL (a base or fine-tuned model id), so an app written for a hosted model name "
        "runs unchanged. `tracetune serve --model-alias NAME=MODEL` adds to them.",
    )

    model_prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="Price table for run costs, MODEL → [USD per million input tokens, USD per million output "
        'tokens] (a JSON object in the environment, e.g. {"gpt-4o-mini": [0.15, 0.6]}). A run read through the '
        "LangSmith API whose usage reports no cost gets prompt_cost/completion_cost/total_cost from it, by the model "
        "name the run gives (extra.metadata.ls_model_name, invocation_params.model, llm_output.model_name).",
    )

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'tracetune.db'}"

    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags) taking precedence."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)  # type: ignore[arg-type]
