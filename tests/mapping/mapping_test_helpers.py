"""Helpers shared by the mapping tests; a plain module because `conftest` names clash across test folders."""

from __future__ import annotations

from pathlib import Path

from mapping import Taxonomy, TaxonomyClass

# The shared ImageNet-1k index is cached across runs in the repository's ignored
# .cache folder. The manifest check rebuilds it whenever the taxonomy, encoder
# or FAISS version changes. Persistence tests use their own temporary folders.
SHARED_CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "mapping-tests"


def small_taxonomy(name: str = "pets", extra: tuple[str, ...] = ()) -> Taxonomy:
    """Return a ten-class taxonomy for tests that build many indexes."""
    names = ["cat", "dog", "horse", "parrot", "goldfish", "hamster", "rabbit", "turtle", "canary", "ferret", *extra]
    classes = [TaxonomyClass(id=f"c{i}", index=i, name=n, synonyms=(f"pet {n}",)) for i, n in enumerate(names)]
    return Taxonomy(name, classes)
