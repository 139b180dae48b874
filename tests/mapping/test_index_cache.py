"""Index persistence: cache hits, rebuilds on changed inputs, corrupted files, HNSW and threads."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mapping_test_helpers import small_taxonomy
from mapping import Mapper, Taxonomy, TextEncoder, load_encoder
from mapping.encoder import resolve_encoder_path
from mapping.index import cache_folder


def cached_files(cache_dir: Path, mapper: Mapper) -> Path:
    return cache_folder(cache_dir, mapper.taxonomy, mapper.encoder, mapper.index_kind)


def test_second_mapper_loads_cache(encoder: TextEncoder, cache_dir: Path) -> None:
    first = Mapper(small_taxonomy(), encoder, cache_dir=cache_dir)
    second = Mapper(small_taxonomy(), encoder, cache_dir=cache_dir)

    assert first.index_status == "built"
    assert second.index_status == "loaded"
    assert np.array_equal(first.class_index.vectors, second.class_index.vectors)
    assert second.map("pet hamster").labels[0].id == "c5"
    folder = cached_files(cache_dir, second)
    assert sorted(path.name for path in folder.iterdir()) == ["index.faiss", "manifest.json", "rows.npy"]


def test_manifest_records_build_inputs(encoder: TextEncoder, cache_dir: Path) -> None:
    import faiss

    mapper = Mapper(small_taxonomy(), encoder, cache_dir=cache_dir)
    manifest = json.loads((cached_files(cache_dir, mapper) / "manifest.json").read_text())

    assert manifest["taxonomy_hash"] == mapper.taxonomy.hash
    assert manifest["encoder_name"] == "all-MiniLM-L6-v2"
    assert manifest["dimension"] == 384
    assert manifest["faiss_version"] == faiss.__version__
    assert manifest["num_vectors"] == 20
    assert set(manifest["files"]) == {"index.faiss", "rows.npy"}


def test_changed_taxonomy_rebuilds(encoder: TextEncoder, cache_dir: Path) -> None:
    Mapper(small_taxonomy(), encoder, cache_dir=cache_dir)
    changed = Mapper(small_taxonomy(extra=("gerbil",)), encoder, cache_dir=cache_dir)
    again = Mapper(small_taxonomy(extra=("gerbil",)), encoder, cache_dir=cache_dir)

    assert changed.index_status.startswith("rebuilt: taxonomy_hash changed")
    assert changed.map("pet gerbil").labels[0].id == "c10"
    assert again.index_status == "loaded"


def test_changed_templates_rebuild(encoder: TextEncoder, cache_dir: Path) -> None:
    Mapper(small_taxonomy(), encoder, cache_dir=cache_dir)
    templated = Mapper(small_taxonomy(), encoder, cache_dir=cache_dir, templates=("a photo of a {}.",))

    assert templated.index_status.startswith("rebuilt: templates changed")
    assert templated.class_index.faiss_index.ntotal == 40


@pytest.fixture(scope="module")
def cls_pooling_encoder(tmp_path_factory: pytest.TempPathFactory) -> TextEncoder:
    """A genuinely different encoder: MiniLM weights with CLS pooling, saved as a local model."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    base = SentenceTransformer(resolve_encoder_path("all-MiniLM-L6-v2"), device="cpu")
    folder = tmp_path_factory.mktemp("minilm-cls")
    SentenceTransformer(modules=[base[0], Pooling(384, pooling_mode="cls")], device="cpu").save(str(folder))
    return load_encoder(str(folder))


def test_changed_encoder_weights_rebuild(encoder: TextEncoder, cls_pooling_encoder: TextEncoder, cache_dir: Path) -> None:
    # Same cache folder name through a shared alias, so only the fingerprint differs.
    original = Mapper(small_taxonomy(), encoder, cache_dir=cache_dir)
    cls_pooling_encoder.name = encoder.name
    swapped = Mapper(small_taxonomy(), cls_pooling_encoder, cache_dir=cache_dir)

    assert original.index_status == "built"
    assert swapped.index_status.startswith("rebuilt: encoder_fingerprint changed")
    assert not np.allclose(original.class_index.vectors, swapped.class_index.vectors)


def test_corrupted_index_file_rebuilds(encoder: TextEncoder, cache_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    mapper = Mapper(small_taxonomy(), encoder, cache_dir=cache_dir)
    index_file = cached_files(cache_dir, mapper) / "index.faiss"
    index_file.write_bytes(b"not a faiss index")

    with caplog.at_level(logging.WARNING, logger="mapping.index"):
        rebuilt = Mapper(small_taxonomy(), encoder, cache_dir=cache_dir)

    assert rebuilt.index_status.startswith("rebuilt: checksum mismatch")
    assert "index.faiss" in caplog.text
    assert rebuilt.map("pet rabbit").labels[0].id == "c6"
    assert Mapper(small_taxonomy(), encoder, cache_dir=cache_dir).index_status == "loaded"


def test_unreadable_index_with_valid_checksum_rebuilds(encoder: TextEncoder, cache_dir: Path) -> None:
    # A file that passes the checksum but that FAISS cannot parse: the manifest is forged to match.
    import hashlib

    mapper = Mapper(small_taxonomy(), encoder, cache_dir=cache_dir)
    folder = cached_files(cache_dir, mapper)
    (folder / "index.faiss").write_bytes(b"IxF2" + b"\x00" * 16)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["index.faiss"] = hashlib.sha256((folder / "index.faiss").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))

    rebuilt = Mapper(small_taxonomy(), encoder, cache_dir=cache_dir)

    assert rebuilt.index_status.startswith("rebuilt: cannot read cached index")
    assert rebuilt.map("pet canary").labels[0].id == "c8"


@pytest.mark.parametrize("damage", ["garbage", "empty", "list", "missing rows"])
def test_damaged_manifest_or_rows_rebuild(encoder: TextEncoder, cache_dir: Path, damage: str) -> None:
    mapper = Mapper(small_taxonomy(), encoder, cache_dir=cache_dir)
    folder = cached_files(cache_dir, mapper)
    if damage == "garbage":
        (folder / "manifest.json").write_bytes(b"\xff\xfe{")
    elif damage == "empty":
        (folder / "manifest.json").write_text("")
    elif damage == "list":
        (folder / "manifest.json").write_text("[1, 2]")
    else:
        (folder / "rows.npy").unlink()

    rebuilt = Mapper(small_taxonomy(), encoder, cache_dir=cache_dir)

    assert rebuilt.index_status.startswith("rebuilt: ")
    assert rebuilt.map("pet turtle").labels[0].id == "c7"


def test_rows_file_is_not_unpickled(encoder: TextEncoder, cache_dir: Path) -> None:
    # An object array needs pickle; the loader must refuse it and rebuild instead of executing it.
    import hashlib

    mapper = Mapper(small_taxonomy(), encoder, cache_dir=cache_dir)
    folder = cached_files(cache_dir, mapper)
    np.save(folder / "rows.npy", np.array([object()] * 20, dtype=object), allow_pickle=True)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["rows.npy"] = hashlib.sha256((folder / "rows.npy").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))

    rebuilt = Mapper(small_taxonomy(), encoder, cache_dir=cache_dir)

    assert rebuilt.index_status.startswith("rebuilt: cannot read cached index")


def test_no_cache_dir_builds_in_memory(encoder: TextEncoder) -> None:
    mapper = Mapper(small_taxonomy(), encoder, cache_dir=None)

    assert mapper.index_status == "built"
    assert mapper.map("pet dog").labels[0].id == "c1"


def test_unknown_index_kind(encoder: TextEncoder) -> None:
    with pytest.raises(ValueError, match="unknown index kind 'ivf'"):
        Mapper(small_taxonomy(), encoder, index_kind="ivf")


def test_hnsw_matches_flat(imagenet_1k: Taxonomy, encoder: TextEncoder, cache_dir: Path) -> None:
    # The first 300 ImageNet classes (fish, birds, reptiles, dogs, cats) keep the build short.
    subset = Taxonomy("imagenet-300", imagenet_1k.classes[:300])
    flat = Mapper(subset, encoder, index_kind="flat", cache_dir=cache_dir)
    Mapper(subset, encoder, index_kind="hnsw", cache_dir=cache_dir)
    hnsw = Mapper(subset, encoder, index_kind="hnsw", cache_dir=cache_dir)
    answers = ["fluffy persian kitten", "small yellow bird", "striped big cat", "spotted dog", "a shark with sharp teeth"]

    assert hnsw.index_status == "loaded"
    assert hnsw.class_index.kind == "hnsw"
    for answer in answers:
        exact = flat.map(answer, top_k=3)
        approximate = hnsw.map(answer, top_k=3)
        assert approximate.labels[0].id == exact.labels[0].id
        assert approximate.similarity == pytest.approx(exact.similarity, abs=1e-5)


def test_concurrent_maps_match_sequential(mapper_1k: Mapper) -> None:
    answers = ["tabby cat", "fluffy persian kitten", "I don't know", "a red sports car", "crane", "golden retreiver"] * 4
    expected = [mapper_1k.map(answer).to_dict() for answer in answers]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda answer: mapper_1k.map(answer).to_dict(), answers))

    assert results == expected
