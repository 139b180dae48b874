"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """Return the directory of the offline models, building any that are missing or stale.

    `make test` builds them first; on a fresh clone the first session builds
    them here: about 90 s of CPU time, mostly demo model training, and
    longer in wall time when other processes share the cores.
    """
    from service.models import build_models

    path = Path(os.environ.get("MLLM_CLASSIFY_MODELS_DIR", REPO_ROOT / "models"))
    build_models(path)
    return path
