"""Service configuration: one YAML file, overridden by environment variables.

The defaults live in `service/config.yaml`, which documents every key. A file
named by `MLLM_CLASSIFY_CONFIG` replaces those defaults key by key, and an
environment variable `MLLM_CLASSIFY_<SECTION>__<KEY>` overrides a single key,
e.g. `MLLM_CLASSIFY_BATCHING__MAX_BATCH_SIZE=16`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_CONFIG_PATH = Path(__file__).with_name("config.yaml")
ENV_PREFIX = "MLLM_CLASSIFY_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Section):
    backend: Literal["transformers", "openai", "supervised"] = "transformers"
    model_id: str = "HuggingFaceTB/SmolVLM-256M-Instruct"
    device: str = "auto"
    dtype: str = "auto"
    max_new_tokens: int = Field(24, ge=1, le=512)
    # Threads torch may use for one batch; 0 keeps torch's default (all cores).
    torch_threads: int = Field(0, ge=0)
    # Longest image side in pixels before the processor sees it.
    max_image_side: int = Field(1024, ge=32)
    # OpenAI-compatible server, used when backend is "openai".
    openai_base_url: str = "http://127.0.0.1:8000/v1"
    openai_api_key_env: str = "OPENAI_API_KEY"
    openai_timeout_s: float = Field(60.0, gt=0)


class MappingConfig(_Section):
    taxonomy: str = "imagenet-1k"
    # Extra taxonomies served besides the default: built-in names or file paths.
    extra_taxonomies: list[str] = Field(default_factory=list)
    encoder: str = "all-MiniLM-L6-v2"
    index: Literal["flat", "hnsw"] = "flat"
    cache_dir: str = "~/.cache/mllm-classify"
    # Cosine similarity under which an answer counts as outside the class list.
    out_of_list_threshold: float = Field(0.55, ge=-1.0, le=1.0)
    # Answer texts whose embeddings stay cached (LRU), because MLLM answers
    # repeat and a hit skips the text encoder, the slowest step of mapping.
    # 0 disables the cache.
    answer_cache_size: int = Field(4096, ge=0)


class BatchingConfig(_Section):
    # Counted in images, across requests.
    max_batch_size: int = Field(8, ge=1, le=256)
    # A prompt still queued this long after it arrived fails with 503
    # (queue_timeout) instead of starting late. Keep it above a few batch times:
    # a full queue drains one max_batch_size batch at a time.
    max_latency_ms: int = Field(60000, ge=10)


class LimitsConfig(_Section):
    # Requests in flight per worker before new ones get 429.
    max_concurrency: int = Field(64, ge=1)
    retry_after_s: int = Field(1, ge=0)
    request_timeout_s: float = Field(120.0, gt=0)
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=1024)
    max_images_per_request: int = Field(32, ge=1)
    max_candidates: int = Field(200, ge=1)
    max_candidate_chars: int = Field(200, ge=1)
    max_top_k: int = Field(20, ge=1)


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    http_port: int = Field(3000, ge=1, le=65535)
    grpc_enabled: bool = True
    grpc_port: int = Field(50051, ge=1, le=65535)
    grpc_max_message_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    workers: int = Field(1, ge=1)
    # Name of the environment variable holding the API key; empty value = no key required.
    api_key_env: str = "MLLM_CLASSIFY_API_KEY"
    protect_metrics: bool = False


class FetchConfig(_Section):
    # Server-side fetching of `image_url` is off unless enabled with a host allowlist.
    enabled: bool = False
    # Exact host names (lowercase, no port); "*.example.com" matches subdomains only.
    allowed_hosts: list[str] = Field(default_factory=list)
    max_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    # Whole fetch, redirects included.
    timeout_s: float = Field(10.0, gt=0)
    max_redirects: int = Field(3, ge=0, le=10)
    # Test-only: let allowlisted hosts resolve to loopback and private addresses.
    allow_private_addresses: bool = False


class FaultsConfig(_Section):
    """Test-only fault injection; every value off by default."""

    # Model batches that raise at startup, counted from the first batch.
    fail_batches: int = Field(0, ge=0)
    # When this file exists at the start of a batch, that batch raises and the file is deleted.
    fail_batch_file: str = ""
    # Extra seconds every batch sleeps, to hold requests in flight.
    batch_delay_s: float = Field(0.0, ge=0)


class Config(_Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    mapping: MappingConfig = Field(default_factory=MappingConfig)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    faults: FaultsConfig = Field(default_factory=FaultsConfig)

    def api_key(self) -> str | None:
        """Return the configured API key, or None when none is set."""
        value = os.environ.get(self.server.api_key_env, "")
        return value or None


class ConfigError(ValueError):
    """Raised for an unreadable config file or an invalid value."""


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid YAML in config file {path}: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must contain a mapping of sections, got {type(data).__name__}")
    return data


# Sections with their own settings reader: annotation assist reads
# MLLM_CLASSIFY_ASSIST__* itself (service/assist/settings.py).
SEPARATE_SECTIONS = frozenset({"assist"})


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        if section in SEPARATE_SECTIONS:
            continue
        # YAML parsing turns "16" into an int and "true" into a bool, as in the file.
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        overrides.setdefault(section, {})[key] = value
    return overrides


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Load defaults, then the file from `path` or MLLM_CLASSIFY_CONFIG, then env overrides."""
    environ = dict(os.environ if environ is None else environ)
    data = _read_yaml(DEFAULT_CONFIG_PATH)

    file_path = path or environ.get(ENV_PREFIX + "CONFIG")
    if file_path:
        data = _merge(data, _read_yaml(Path(file_path)))

    data = _merge(data, _env_overrides(environ))
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"invalid configuration: {error}") from error
