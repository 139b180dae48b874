"""Shared fixtures: the real MiniLM encoder and an ImageNet-1k mapper built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mapping import Mapper, Taxonomy, TaxonomyClass, TextEncoder, load_encoder, load_taxonomy  # noqa: E402


@pytest.fixture(scope="session")
def encoder() -> TextEncoder:
    return load_encoder("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def imagenet_1k() -> Taxonomy:
    return load_taxonomy("imagenet-1k")


# The shared ImageNet-1k index is cached across runs in the repository's ignored
# .cache folder; the manifest check rebuilds it whenever the taxonomy, encoder
# or FAISS version changes. Persistence tests use their own temporary folders.
SHARED_CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "mapping-tests"


@pytest.fixture(scope="session")
def mapper_1k(imagenet_1k: Taxonomy, encoder: TextEncoder) -> Mapper:
    return Mapper(imagenet_1k, encoder, cache_dir=SHARED_CACHE_DIR, out_of_list_threshold=0.5)


def small_taxonomy(name: str = "pets", extra: tuple[str, ...] = ()) -> Taxonomy:
    """Return a ten-class taxonomy for tests that build many indexes."""
    names = ["cat", "dog", "horse", "parrot", "goldfish", "hamster", "rabbit", "turtle", "canary", "ferret", *extra]
    classes = [TaxonomyClass(id=f"c{i}", index=i, name=n, synonyms=(f"pet {n}",)) for i, n in enumerate(names)]
    return Taxonomy(name, classes)


@pytest.fixture()
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"
