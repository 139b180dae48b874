"""Shared fixtures: the real MiniLM encoder and an ImageNet-1k mapper built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mapping import Mapper, Taxonomy, TextEncoder, load_encoder, load_taxonomy  # noqa: E402
from mapping_test_helpers import SHARED_CACHE_DIR  # noqa: E402


@pytest.fixture(scope="session")
def encoder() -> TextEncoder:
    return load_encoder("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def imagenet_1k() -> Taxonomy:
    return load_taxonomy("imagenet-1k")


@pytest.fixture(scope="session")
def mapper_1k(imagenet_1k: Taxonomy, encoder: TextEncoder) -> Mapper:
    return Mapper(imagenet_1k, encoder, cache_dir=SHARED_CACHE_DIR, out_of_list_threshold=0.5)


@pytest.fixture()
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"
