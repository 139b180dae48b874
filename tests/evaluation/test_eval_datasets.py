"""Dataset loaders: ReaL real.json, proposed-label CSVs, manifests, image folders, bundled photos."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from evaluation.datasets import (
    DatasetError,
    imagenet_wnids,
    load_bundled,
    load_dataset,
    load_image,
    load_image_folder,
    load_imagenet_val,
    load_manifest,
)
from evaluation.store import ResultRow, ResultStore, read_rows

REAL_JSON = "evaluation/data/real.json"


def test_real_json_counts_without_images():
    dataset = load_imagenet_val(None, REAL_JSON)

    assert len(dataset) == 50_000
    assert dataset.num_dropped() == 3_163
    distribution = dataset.label_count_distribution()
    assert distribution[0] == 3_163
    assert distribution[1] == 39_394
    assert distribution[2] == 5_408
    assert distribution[3] == 1_319
    assert sum(count for labels, count in distribution.items() if labels >= 4) == 716


def test_real_json_item_order_and_ids():
    dataset = load_imagenet_val("/data/imagenet/val", REAL_JSON)
    wnids = imagenet_wnids()
    raw = json.loads(open(REAL_JSON, encoding="utf-8").read())

    first = dataset[0]
    assert first.id == "ILSVRC2012_val_00000001.JPEG"
    assert first.source == "/data/imagenet/val/ILSVRC2012_val_00000001.JPEG"
    assert first.labels == tuple(wnids[index] for index in raw[0])
    assert dataset[49_999].id == "ILSVRC2012_val_00050000.JPEG"
    assert first.label is None


def test_proposed_labels_csv(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(
        "id,category,original_label,proposed_labels,manually_validated\n"
        'ILSVRC2012_val_00000002.JPEG,M,582,"930, 963",False\n'
        "ILSVRC2012_val_00000001.JPEG,A,26,26,False\n"
        "ILSVRC2012_val_00000003.JPEG,Z,5,,False\n",
        encoding="utf-8",
    )
    wnids = imagenet_wnids()
    dataset = load_imagenet_val(tmp_path, path)

    assert [sample.id for sample in dataset] == [
        "ILSVRC2012_val_00000001.JPEG",
        "ILSVRC2012_val_00000002.JPEG",
        "ILSVRC2012_val_00000003.JPEG",
    ]
    assert dataset[0].labels == (wnids[26],)
    assert dataset[1].labels == (wnids[930], wnids[963])
    assert dataset[1].label == wnids[582]
    assert dataset[2].labels == ()
    assert dataset.num_dropped() == 1


def test_csv_without_proposed_labels_rejected(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("id,original_label\nILSVRC2012_val_00000001.JPEG,3\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="proposed_labels"):
        load_imagenet_val(tmp_path, path)


def test_single_label_text_file(tmp_path):
    path = tmp_path / "val_labels.txt"
    path.write_text("65\n970\n", encoding="utf-8")
    wnids = imagenet_wnids()
    dataset = load_imagenet_val(tmp_path, path)

    assert [sample.labels for sample in dataset] == [(wnids[65],), (wnids[970],)]
    assert dataset[1].label == wnids[970]


def test_out_of_range_class_index_rejected(tmp_path):
    path = tmp_path / "real.json"
    path.write_text("[[1], [1000]]", encoding="utf-8")
    with pytest.raises(DatasetError, match="1000"):
        load_imagenet_val(None, path)


def test_image_folder(tmp_path):
    for class_id, color in (("n02123045", "red"), ("n07920052", "blue")):
        (tmp_path / class_id).mkdir()
        Image.new("RGB", (8, 8), color).save(tmp_path / class_id / "one.png")
    (tmp_path / "n07920052" / "notes.txt").write_text("not an image", encoding="utf-8")

    dataset = load_image_folder(tmp_path)
    assert [sample.id for sample in dataset] == ["n02123045/one.png", "n07920052/one.png"]
    assert dataset[1].labels == ("n07920052",)
    assert load_image(dataset[0]).getpixel((0, 0)) == (255, 0, 0)


def test_manifest_relative_paths(tmp_path):
    Image.new("L", (4, 4), 128).save(tmp_path / "gray.png")
    manifest = tmp_path / "set.jsonl"
    manifest.write_text(json.dumps({"path": "gray.png", "labels": ["n02123045", "n02123159"]}) + "\n\n", encoding="utf-8")

    dataset = load_dataset(str(manifest))
    assert len(dataset) == 1
    assert dataset[0].id == "gray.png"
    assert dataset[0].label == "n02123045"
    assert load_image(dataset[0]).mode == "RGB"


def test_manifest_duplicate_id_rejected(tmp_path):
    manifest = tmp_path / "set.jsonl"
    line = json.dumps({"path": "a.png", "labels": []})
    manifest.write_text(line + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="more than once"):
        load_manifest(manifest)


def test_bundled_photos_load_with_valid_labels():
    dataset = load_bundled()
    wnids = set(imagenet_wnids())

    assert len(dataset) == 10
    assert dataset.num_dropped() == 2
    for sample in dataset:
        assert set(sample.labels) <= wnids, sample.id
        image = load_image(sample)
        assert image.mode == "RGB"
        assert min(image.size) >= 128


def test_store_resumes_after_partial_line(tmp_path):
    path = tmp_path / "results.jsonl"
    with ResultStore(path) as store:
        store.append([ResultRow(setting="protocol=open", image_id="a", labels=["x"])])
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"setting": "protocol=open", "image_id": "b", "lab')

    with ResultStore(path) as store:
        assert store.is_done("protocol=open", "a")
        assert not store.is_done("protocol=open", "b")
        store.append([ResultRow(setting="protocol=open", image_id="b", labels=["y"])])

    assert [row.image_id for row in read_rows(path)] == ["a", "b"]


def test_bundled_augmented_views():
    dataset = load_dataset("bundled-augmented")
    plain = {sample.id: sample for sample in load_bundled()}

    assert len(dataset) == 80
    assert dataset.num_dropped() == 16
    assert dataset[0].id == "chelsea|original"
    assert dataset[1].labels == plain["chelsea"].labels

    original = load_image(dataset[0])
    flipped = load_image(dataset[1])
    cropped = load_image(dataset[2])
    assert flipped.size == original.size
    assert flipped.getpixel((0, 0)) == original.getpixel((original.width - 1, 0))
    assert cropped.size == (round(original.width * 0.8), round(original.height * 0.8))


def test_store_keeps_models_apart(tmp_path):
    path = tmp_path / "results.jsonl"
    with ResultStore(path) as store:
        store.append([ResultRow(setting="protocol=open", image_id="a", labels=["x"], model="efficientnet-lite0")])

    with ResultStore(path) as store:
        assert store.is_done("protocol=open", "a", "efficientnet-lite0")
        assert not store.is_done("protocol=open", "a", "models/demo-llava")
