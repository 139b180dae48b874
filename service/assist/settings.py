"""Settings of annotation assist, read from `MLLM_CLASSIFY_ASSIST__<KEY>` variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "MLLM_CLASSIFY_ASSIST__"

# Relative to the working directory of the service, like the `var/` folder
# that .gitignore keeps out of the repository.
DEFAULT_DATABASE_URL = "sqlite:///var/assist.sqlite3"


class AssistSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    # SQLAlchemy URL: sqlite:///relative/path.sqlite3, sqlite:////absolute/path
    # or postgresql+psycopg://user:password@host:port/dbname.
    database_url: str = DEFAULT_DATABASE_URL
    # Folder of images that the review page works through; None hides the queue.
    images_dir: Path | None = None
    # Suggestions per image.
    top_k: int = Field(5, ge=1, le=20)
    # Run the confirming multiple-choice pass when a request does not set `confirm`.
    confirm: bool = False
    # Protocol of the confirming pass. "score" ranks the suggested classes by the
    # model's likelihood of each name and its probabilities become the label
    # confidences; "choice" asks a multiple-choice question and only nudges them.
    # A backend without likelihood scoring falls back to "choice".
    confirm_protocol: Literal["score", "choice"] = "score"
    # Taxonomy of the suggestions; None uses the service default.
    taxonomy: str | None = None
    # Reported to Label Studio as model_version; empty uses the served model's name.
    model_version: str = ""
    # Base URL of the Label Studio instance, used to fetch task images given
    # as paths such as /data/upload/1/cat.jpg; empty rejects such paths.
    label_studio_url: str = ""
    # Environment variable with the Label Studio access token for those fetches.
    label_studio_api_key_env: str = "LABEL_STUDIO_API_KEY"
    # Upper bound for an image fetched from a task URL, in bytes.
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    fetch_timeout_s: float = Field(30.0, gt=0)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> AssistSettings:
        """Build settings from `MLLM_CLASSIFY_ASSIST__*` variables, then keyword overrides."""
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for name, raw in environ.items():
            if name.startswith(ENV_PREFIX):
                values[name[len(ENV_PREFIX):].lower()] = raw
        values.update(overrides)
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise ValueError(f"invalid annotation assist setting in {ENV_PREFIX}* variables: {error}") from error

    def label_studio_api_key(self) -> str | None:
        """Return the Label Studio access token from the environment, or None."""
        return os.environ.get(self.label_studio_api_key_env) or None
