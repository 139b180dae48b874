"""FAISS index over class-name embeddings, cached on disk beside a manifest.

Every class contributes several unit vectors (display name, synonyms, and
each optional template filled with each of them). A search returns classes
ranked by their best-matching vector, which is the cosine similarity because
all vectors are L2-normalized and the index uses inner product.

Cache layout, one folder per (taxonomy, encoder, index kind):

    <cache_dir>/indexes/<taxonomy>__<encoder>__<kind>/
        manifest.json   taxonomy hash, encoder name and fingerprint, dimension,
                        FAISS version, templates, and SHA-256 of the two files below
        index.faiss     written by faiss.write_index
        rows.npy        class index of every vector row (int32)

A cached index is used only when every manifest field matches the current
build inputs and both checksums match; otherwise it is rebuilt and rewritten.
Loading uses faiss.read_index and numpy.load(allow_pickle=False), so a cache
file can never execute code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mapping.encoder import TextEncoder
from mapping.normalize import normalize_text
from mapping.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

IndexKind = Literal["flat", "hnsw"]
INDEX_KINDS: tuple[str, ...] = ("flat", "hnsw")
# Bump when the cache layout or the choice of texts per class changes.
CACHE_FORMAT_VERSION = 2
HNSW_NEIGHBORS = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128

_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
# faiss.omp_set_num_threads is process-wide, so HNSW builds are serialized.
_HNSW_BUILD_LOCK = threading.Lock()


class IndexCacheError(RuntimeError):
    """Raised internally when a cached index is missing, stale or corrupted; the mapper rebuilds it."""


@dataclass(frozen=True)
class IndexManifest:
    """Build inputs that must all match for a cached index to be reused."""

    format_version: int
    taxonomy_name: str
    taxonomy_hash: str
    encoder_name: str
    encoder_fingerprint: str
    dimension: int
    index_kind: str
    faiss_version: str
    templates: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["templates"] = list(self.templates)
        return data


def class_texts(taxonomy: Taxonomy, templates: Sequence[str] = ()) -> tuple[list[str], np.ndarray]:
    """Return the texts to embed and, per text, the index of its class.

    Names that normalize to the same key within a class are embedded once.
    Each template ("a photo of a {}.") adds one text per name. The first text
    of every class is its display name; `ClassIndex.display_rows` relies on it.
    """
    texts: list[str] = []
    owners: list[int] = []
    for cls in taxonomy.classes:
        unique: dict[str, str] = {}
        for name in cls.all_names():
            unique.setdefault(normalize_text(name), name)
        for name in unique.values():
            texts.append(name)
            owners.append(cls.index)
            for template in templates:
                texts.append(template.format(name))
                owners.append(cls.index)
    return texts, np.asarray(owners, dtype=np.int32)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _new_faiss_index(kind: str, dimension: int) -> Any:
    import faiss

    if kind == "flat":
        return faiss.IndexFlatIP(dimension)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, HNSW_NEIGHBORS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
        return index
    raise ValueError(f"unknown index kind {kind!r}; use one of {', '.join(INDEX_KINDS)}")


class ClassIndex:
    """Class-level nearest-neighbour search over a FAISS index of name vectors."""

    def __init__(self, faiss_index: Any, rows: np.ndarray, num_classes: int, kind: str) -> None:
        if faiss_index.ntotal != len(rows):
            raise IndexCacheError(f"index has {faiss_index.ntotal} vectors but the row table has {len(rows)}")
        if len(rows) and (rows.min() < 0 or rows.max() >= num_classes):
            raise IndexCacheError(f"row table names class indexes outside 0..{num_classes - 1}")
        self.faiss_index = faiss_index
        self.kind = kind
        self.rows = rows
        self.num_classes = num_classes
        # Dense copy of the vectors for exact scoring of candidate subsets and distractors.
        self.vectors = faiss_index.reconstruct_n(0, faiss_index.ntotal) if faiss_index.ntotal else np.zeros((0, faiss_index.d), np.float32)
        counts = np.bincount(rows, minlength=num_classes)
        self.max_vectors_per_class = int(counts.max()) if len(rows) else 0
        order = np.argsort(rows, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)])
        self._rows_of_class = [order[starts[i] : starts[i + 1]] for i in range(num_classes)]
        # Row of each class's display-name vector: its first row, by the order of class_texts.
        self.display_rows = np.array([rows_of[0] if len(rows_of) else -1 for rows_of in self._rows_of_class], dtype=np.int64)

    @property
    def dimension(self) -> int:
        return int(self.faiss_index.d)

    def rows_of(self, class_indices: Sequence[int]) -> np.ndarray:
        """Return the vector rows that belong to the given classes."""
        if not class_indices:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([self._rows_of_class[i] for i in class_indices])

    def search(self, queries: np.ndarray, num_classes: int) -> list[list[tuple[int, float]]]:
        """Return, per query, up to `num_classes` (class index, cosine) pairs, best first.

        Searching `num_classes * max_vectors_per_class` vectors is enough for an
        exact class ranking with a flat index: every vector ranked above the
        k-th class's best vector belongs to one of the k-1 better classes.
        """
        num_classes = min(num_classes, self.num_classes)
        if num_classes <= 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        num_vectors = min(self.faiss_index.ntotal, num_classes * self.max_vectors_per_class)
        if self.kind == "hnsw":
            import faiss

            params = faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, num_vectors))
            scores, ids = self.faiss_index.search(queries, num_vectors, params=params)
        else:
            scores, ids = self.faiss_index.search(queries, num_vectors)
        return [self._best_per_class(ids[row], scores[row], num_classes) for row in range(len(queries))]

    def _best_per_class(self, ids: np.ndarray, scores: np.ndarray, num_classes: int) -> list[tuple[int, float]]:
        ranked: list[tuple[int, float]] = []
        seen: set[int] = set()
        for vector_id, score in zip(ids.tolist(), scores.tolist()):
            if vector_id < 0:
                break
            class_index = int(self.rows[vector_id])
            if class_index in seen:
                continue
            seen.add(class_index)
            ranked.append((class_index, float(score)))
            if len(ranked) == num_classes:
                break
        return ranked

    def search_subset(self, queries: np.ndarray, class_indices: Sequence[int], num_classes: int) -> list[list[tuple[int, float]]]:
        """Rank only `class_indices` for each query by exact inner product."""
        rows = self.rows_of(class_indices)
        if len(rows) == 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        scores = queries @ self.vectors[rows].T
        owners = self.rows[rows]
        results: list[list[tuple[int, float]]] = []
        for query_scores in scores:
            best: dict[int, float] = {}
            for owner, score in zip(owners.tolist(), query_scores.tolist()):
                if score > best.get(owner, -2.0):
                    best[owner] = score
            # Sort by score, then class index, so ties come out in a fixed order.
            ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:num_classes]
            results.append([(owner, float(score)) for owner, score in ranked])
        return results


def cache_folder(cache_dir: Path, taxonomy: Taxonomy, encoder: TextEncoder, kind: str) -> Path:
    name = "__".join(_SLUG.sub("_", part) for part in (taxonomy.name, encoder.name, kind))
    return cache_dir / "indexes" / name


def expected_manifest(taxonomy: Taxonomy, encoder: TextEncoder, kind: str, templates: Sequence[str]) -> IndexManifest:
    import faiss

    return IndexManifest(
        format_version=CACHE_FORMAT_VERSION,
        taxonomy_name=taxonomy.name,
        taxonomy_hash=taxonomy.hash,
        encoder_name=encoder.name,
        encoder_fingerprint=encoder.fingerprint,
        dimension=encoder.dimension,
        index_kind=kind,
        faiss_version=faiss.__version__,
        templates=tuple(templates),
    )


def embed_class_texts(taxonomy: Taxonomy, encoder: TextEncoder, templates: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Return the unit vectors of every class text and the class index of each row."""
    texts, rows = class_texts(taxonomy, templates)
    return encoder.encode(texts), rows


def index_from_vectors(vectors: np.ndarray, rows: np.ndarray, num_classes: int, kind: str) -> ClassIndex:
    """Build a FAISS index of kind `kind` over precomputed class vectors."""
    import faiss

    index = _new_faiss_index(kind, vectors.shape[1])
    if kind == "hnsw":
        # HNSW insertion order depends on thread scheduling; one thread keeps the graph reproducible.
        with _HNSW_BUILD_LOCK:
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                index.add(vectors)
            finally:
                faiss.omp_set_num_threads(threads)
    else:
        index.add(vectors)
    return ClassIndex(index, rows, num_classes, kind)


def build_index(taxonomy: Taxonomy, encoder: TextEncoder, kind: str, templates: Sequence[str] = ()) -> ClassIndex:
    """Embed every class text and build a FAISS index of kind `kind`."""
    started = time.perf_counter()
    vectors, rows = embed_class_texts(taxonomy, encoder, templates)
    class_index = index_from_vectors(vectors, rows, len(taxonomy), kind)
    logger.info(
        "built %s index for taxonomy %s: %d vectors for %d classes in %.1f s",
        kind, taxonomy.name, len(rows), len(taxonomy), time.perf_counter() - started,
    )
    return class_index


def save_index(folder: Path, class_index: ClassIndex, manifest: IndexManifest) -> None:
    """Write the index files, then the manifest, each through a temporary file and an atomic rename."""
    import faiss

    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    index_tmp = folder / f"index.faiss.{token}.tmp"
    rows_tmp = folder / f"rows.npy.{token}.tmp"
    manifest_tmp = folder / f"manifest.json.{token}.tmp"
    try:
        faiss.write_index(class_index.faiss_index, str(index_tmp))
        with rows_tmp.open("wb") as handle:
            np.save(handle, class_index.rows, allow_pickle=False)
        document = manifest.to_json()
        document["files"] = {"index.faiss": _sha256(index_tmp), "rows.npy": _sha256(rows_tmp)}
        document["num_vectors"] = int(class_index.faiss_index.ntotal)
        manifest_tmp.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        # The manifest goes last: a reader that sees it also sees the files it checksums.
        os.replace(index_tmp, folder / "index.faiss")
        os.replace(rows_tmp, folder / "rows.npy")
        os.replace(manifest_tmp, folder / "manifest.json")
    finally:
        for leftover in (index_tmp, rows_tmp, manifest_tmp):
            leftover.unlink(missing_ok=True)


def load_cached_index(folder: Path, manifest: IndexManifest, num_classes: int) -> ClassIndex:
    """Load a cached index; raise IndexCacheError saying why it cannot be used."""
    import faiss

    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise IndexCacheError(f"no cached index in {folder}")
    try:
        document = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IndexCacheError(f"unreadable manifest {manifest_path}: {error}") from error
    if not isinstance(document, dict):
        raise IndexCacheError(f"manifest {manifest_path} is not a JSON object")

    for field, expected in manifest.to_json().items():
        if document.get(field) != expected:
            raise IndexCacheError(f"{field} changed: cached {document.get(field)!r}, now {expected!r}")

    files = document.get("files") or {}
    for file_name in ("index.faiss", "rows.npy"):
        path = folder / file_name
        if not path.is_file():
            raise IndexCacheError(f"missing cache file {path}")
        if _sha256(path) != files.get(file_name):
            raise IndexCacheError(f"checksum mismatch for {path}: the file is corrupted or was changed")

    try:
        faiss_index = faiss.read_index(str(folder / "index.faiss"))
        rows = np.load(folder / "rows.npy", allow_pickle=False)
    except (RuntimeError, ValueError, OSError) as error:
        raise IndexCacheError(f"cannot read cached index in {folder}: {error}") from error
    if faiss_index.d != manifest.dimension:
        raise IndexCacheError(f"cached index has dimension {faiss_index.d}, expected {manifest.dimension}")
    return ClassIndex(faiss_index, rows.astype(np.int32, copy=False), num_classes, manifest.index_kind)


def load_or_build_index(
    taxonomy: Taxonomy,
    encoder: TextEncoder,
    kind: str,
    cache_dir: Path | None,
    templates: Sequence[str] = (),
) -> tuple[ClassIndex, str]:
    """Return the class index and how it was obtained: "loaded", "built" or "rebuilt: <reason>".

    Without `cache_dir` the index is built in memory and not saved.
    """
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; use one of {', '.join(INDEX_KINDS)}")
    if cache_dir is None:
        return build_index(taxonomy, encoder, kind, templates), "built"

    manifest = expected_manifest(taxonomy, encoder, kind, templates)
    folder = cache_folder(Path(cache_dir).expanduser(), taxonomy, encoder, kind)
    try:
        return load_cached_index(folder, manifest, len(taxonomy)), "loaded"
    except IndexCacheError as error:
        reason = str(error)

    if (folder / "manifest.json").exists():
        logger.warning("rebuilding cached %s index for taxonomy %s: %s", kind, taxonomy.name, reason)
        status = f"rebuilt: {reason}"
    else:
        status = "built"
    class_index = build_index(taxonomy, encoder, kind, templates)
    try:
        save_index(folder, class_index, manifest)
    except OSError as error:
        logger.warning("cannot save index cache to %s, continuing with the in-memory index: %s", folder, error)
    return class_index, status
