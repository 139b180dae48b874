"""Labelled image sets for the evaluation harness.

A dataset is a list of `Sample`s: an id, where the image comes from, the set of
correct class ids (`labels`, empty = no valid label, so the image is dropped
from scoring as in ReaL) and optionally the single original label. Samples
hold no pixels; `load_image` reads one image when the runner needs it, so a
50,000-image dataset costs a few MB of metadata.

Supported layouts:
- an image folder with one subfolder per class (the subfolder name is the class id);
- a JSONL manifest with `path` (relative to the manifest) and `labels` per line;
- an ImageNet validation folder (`ILSVRC2012_val_%08d.JPEG`) with ReaL
  `real.json` multilabels, a CSV with a `proposed_labels` column, or a text
  file of single 0-based class indices;
- the bundled photos (scikit-image and matplotlib sample images, hand-labelled).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
IMAGENET_VAL_NAME = "ILSVRC2012_val_{index:08d}.JPEG"
IMAGENET_VAL_SIZE = 50_000


@dataclass(frozen=True)
class Sample:
    """One labelled image, without its pixels."""

    id: str
    # A file path, or "skimage:<name>" / "matplotlib:<file>" for bundled sample data.
    source: str
    # Every class id that counts as correct; empty means no valid label.
    labels: tuple[str, ...]
    # The single original label, when the dataset has one (ImageNet's own val label).
    label: str | None = None


@dataclass
class Dataset:
    """An ordered list of samples with a name for reports."""

    name: str
    samples: list[Sample]
    # Where the labels came from, for reports.
    description: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def num_dropped(self) -> int:
        """Count samples without a valid label."""
        return sum(1 for sample in self.samples if not sample.labels)

    def label_count_distribution(self) -> dict[int, int]:
        """Count samples by number of labels, e.g. {0: 3163, 1: 39394, ...}."""
        return dict(sorted(Counter(len(sample.labels) for sample in self.samples).items()))


class DatasetError(ValueError):
    """Raised for a dataset file or folder that cannot be read."""


# -- ImageNet class ids --------------------------------------------------------


def imagenet_wnids() -> list[str]:
    """Return the 1000 ImageNet-1k WordNet ids; the position is the class index."""
    text = resources.files("evaluation").joinpath("data/imagenet_synsets.txt").read_text(encoding="utf-8")
    wnids = text.split()
    if len(wnids) != 1000:
        raise DatasetError(f"imagenet_synsets.txt lists {len(wnids)} classes, expected 1000")
    return wnids


def _indices_to_wnids(indices: Sequence[int], wnids: Sequence[str], where: str) -> tuple[str, ...]:
    result = []
    for index in indices:
        if not 0 <= index < len(wnids):
            raise DatasetError(f"{where}: class index {index} is outside 0..{len(wnids) - 1}")
        result.append(wnids[index])
    return tuple(result)


# -- multilabel files ----------------------------------------------------------


def load_real_labels(path: str | Path) -> list[list[int]]:
    """Read a ReaL `real.json`: one list of class indices per val image, in file order."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(f"cannot read ReaL labels {path}: {error}") from error
    if not isinstance(data, list) or not all(isinstance(item, list) for item in data):
        raise DatasetError(f"{path} is not a ReaL label file: expected a JSON list of lists of class indices")
    return data


def load_proposed_labels_csv(path: str | Path) -> dict[str, tuple[list[int], int | None]]:
    """Read a CSV with `id` and `proposed_labels` (and optionally `original_label`) columns.

    Returns {image file name: (proposed class indices, original class index or None)}.
    `proposed_labels` contains comma-separated indices, quoted when there are several.
    """
    path = Path(path)
    result: dict[str, tuple[list[int], int | None]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"id", "proposed_labels"} - set(reader.fieldnames or [])
            if missing:
                raise DatasetError(f"{path} lacks the column(s) {sorted(missing)}; expected id,proposed_labels")
            for line_number, row in enumerate(reader, start=2):
                raw = (row["proposed_labels"] or "").strip()
                try:
                    proposed = [int(part) for part in raw.split(",") if part.strip()]
                    original = row.get("original_label")
                    original_index = int(original) if original not in (None, "") else None
                except ValueError as error:
                    raise DatasetError(f"{path} line {line_number}: invalid class index: {error}") from error
                result[row["id"]] = (proposed, original_index)
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    return result


def load_single_labels_txt(path: str | Path) -> list[int]:
    """Read one 0-based class index per line (val image 1 first)."""
    path = Path(path)
    try:
        return [int(line) for line in path.read_text(encoding="utf-8").split()]
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read single labels {path}: {error}") from error


# -- dataset loaders -----------------------------------------------------------


def load_image_folder(root: str | Path, name: str | None = None) -> Dataset:
    """Load `root/<class id>/<image>`: one class per subfolder, sorted for a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")

    samples = []
    for class_dir in sorted(path for path in root.iterdir() if path.is_dir()):
        for image_path in sorted(class_dir.iterdir()):
            if image_path.suffix.lower() in IMAGE_SUFFIXES:
                image_id = f"{class_dir.name}/{image_path.name}"
                samples.append(Sample(image_id, str(image_path), (class_dir.name,), class_dir.name))
    if not samples:
        raise DatasetError(f"no images found in class subfolders of {root}")
    return Dataset(name or root.name, samples, description=f"image folder {root}")


def load_manifest(path: str | Path, name: str | None = None) -> Dataset:
    """Load a JSONL manifest: `{"path": ..., "labels": [...], "id"?: ..., "label"?: ...}` per line.

    Relative paths are resolved against the manifest's folder. Lines may use
    `source` in place of `path` for bundled sample images.
    """
    path = Path(path)
    samples = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DatasetError(f"cannot read manifest {path}: {error}") from error

    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{path} line {line_number}: invalid JSON: {error}") from error
        samples.append(_manifest_sample(record, path, line_number))

    ids = [sample.id for sample in samples]
    if len(set(ids)) != len(ids):
        duplicate = next(item for item, count in Counter(ids).items() if count > 1)
        raise DatasetError(f"{path}: image id {duplicate!r} appears more than once")
    return Dataset(name or path.stem, samples, description=f"manifest {path}")


def _manifest_sample(record: dict, manifest: Path, line_number: int) -> Sample:
    where = f"{manifest} line {line_number}"
    labels = record.get("labels")
    if not isinstance(labels, list) or not all(isinstance(item, str) for item in labels):
        raise DatasetError(f"{where}: `labels` must be a list of class id strings")

    source = record.get("source")
    if source is None:
        raw_path = record.get("path")
        if not isinstance(raw_path, str):
            raise DatasetError(f"{where}: each line needs a `path` (or a bundled `source`)")
        image_path = Path(raw_path)
        source = str(image_path if image_path.is_absolute() else manifest.parent / image_path)

    image_id = record.get("id") or Path(str(record.get("path", source))).name
    label = record.get("label") or (labels[0] if labels else None)
    return Sample(str(image_id), source, tuple(labels), label)


def load_imagenet_val(
    root: str | Path | None,
    labels_path: str | Path,
    name: str | None = None,
    limit: int | None = None,
) -> Dataset:
    """Load ImageNet val images in a flat folder with labels from one of three files.

    `labels_path` may be a ReaL `real.json` (multilabel, item i = val image i+1),
    a CSV with `id,proposed_labels[,original_label]` columns, or a text file of
    single 0-based class indices. `root` may be None or missing, for scoring
    or label statistics without the images.
    """
    labels_path = Path(labels_path)
    wnids = imagenet_wnids()
    root_path = Path(root) if root is not None else Path("imagenet-val")
    suffix = labels_path.suffix.lower()

    samples: list[Sample] = []
    if suffix == ".json":
        for position, indices in enumerate(load_real_labels(labels_path)):
            file_name = IMAGENET_VAL_NAME.format(index=position + 1)
            labels = _indices_to_wnids(indices, wnids, f"{labels_path} item {position}")
            samples.append(Sample(file_name, str(root_path / file_name), labels, None))
        description = f"ImageNet val with ReaL labels from {labels_path.name}"
    elif suffix == ".csv":
        table = load_proposed_labels_csv(labels_path)
        # Val order, not CSV order, so that runs over several label files line up.
        for file_name in sorted(table):
            proposed, original = table[file_name]
            labels = _indices_to_wnids(proposed, wnids, f"{labels_path} {file_name}")
            single = wnids[original] if original is not None else None
            samples.append(Sample(file_name, str(root_path / file_name), labels, single))
        description = f"ImageNet val with proposed labels from {labels_path.name}"
    else:
        for position, index in enumerate(load_single_labels_txt(labels_path)):
            file_name = IMAGENET_VAL_NAME.format(index=position + 1)
            (wnid,) = _indices_to_wnids([index], wnids, f"{labels_path} line {position + 1}")
            samples.append(Sample(file_name, str(root_path / file_name), (wnid,), wnid))
        description = f"ImageNet val with single labels from {labels_path.name}"

    if limit is not None:
        samples = samples[:limit]
    return Dataset(name or labels_path.stem, samples, description=description)


def bundled_manifest_path() -> Path:
    """Return the path of the bundled photos manifest shipped in the package."""
    return Path(str(resources.files("evaluation").joinpath("data/bundled_photos.jsonl")))


def load_bundled(augmented: bool = False) -> Dataset:
    """Load the hand-labelled scikit-image and matplotlib sample photos.

    With `augmented`, each photo also appears flipped, cropped and rotated
    (`VIEW_NAMES`, 8 views in all), so batch sizes up to 64 hold different
    images. The views of one photo are not independent samples, so intervals
    computed on them are too narrow.
    """
    dataset = load_manifest(bundled_manifest_path(), name="bundled")
    dataset.description = "scikit-image and matplotlib sample photos with hand-checked ImageNet-1k multilabels"
    if augmented:
        dataset.samples = [
            Sample(f"{sample.id}{VIEW_SEPARATOR}{view}", f"{sample.source}{VIEW_SEPARATOR}{view}", sample.labels, sample.label)
            for sample in dataset.samples
            for view in VIEW_NAMES
        ]
        dataset.name = "bundled-augmented"
        dataset.description += f", {len(VIEW_NAMES)} views of each (flips, crops, small rotations)"
    return dataset


def load_dataset(spec: str, labels: str | None = None, limit: int | None = None) -> Dataset:
    """Load a dataset from a CLI spec.

    `bundled` or `bundled-augmented`, a folder, a `.jsonl` manifest, or an
    ImageNet val folder with `labels`.
    """
    if spec in ("bundled", "bundled-augmented"):
        dataset = load_bundled(augmented=spec == "bundled-augmented")
    elif labels is not None:
        dataset = load_imagenet_val(spec, labels)
    elif spec.endswith(".jsonl"):
        dataset = load_manifest(spec)
    else:
        dataset = load_image_folder(spec)

    if limit is not None:
        dataset.samples = dataset.samples[:limit]
    return dataset


# -- pixels --------------------------------------------------------------------


VIEW_SEPARATOR = "|"
VIEW_NAMES = ("original", "hflip", "crop80", "crop80-topleft", "crop80-bottomright", "hflip-crop90", "rotate+8", "rotate-8")


def _crop(image: Image.Image, fraction: float, anchor: str) -> Image.Image:
    width, height = image.size
    crop_width, crop_height = round(width * fraction), round(height * fraction)
    left = {"center": (width - crop_width) // 2, "topleft": 0, "bottomright": width - crop_width}[anchor]
    top = {"center": (height - crop_height) // 2, "topleft": 0, "bottomright": height - crop_height}[anchor]
    return image.crop((left, top, left + crop_width, top + crop_height))


def apply_view(image: Image.Image, view: str) -> Image.Image:
    """Return one of the deterministic views in VIEW_NAMES of an image."""
    flipped = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    views = {
        "original": lambda: image,
        "hflip": lambda: flipped,
        "crop80": lambda: _crop(image, 0.8, "center"),
        "crop80-topleft": lambda: _crop(image, 0.8, "topleft"),
        "crop80-bottomright": lambda: _crop(image, 0.8, "bottomright"),
        "hflip-crop90": lambda: _crop(flipped, 0.9, "center"),
        # Bicubic rotation without expanding, so the corners fill with black.
        "rotate+8": lambda: image.rotate(8, resample=Image.BICUBIC),
        "rotate-8": lambda: image.rotate(-8, resample=Image.BICUBIC),
    }
    if view not in views:
        raise DatasetError(f"unknown image view {view!r}; expected one of {', '.join(VIEW_NAMES)}")
    return views[view]()


def load_image(sample: Sample) -> Image.Image:
    """Read a sample's image as RGB; raise DatasetError when it cannot be read.

    A source ending in `|<view>` (bundled-augmented) is read and then transformed by `apply_view`.
    """
    source, _, view = sample.source.partition(VIEW_SEPARATOR)
    kind, _, name = source.partition(":")
    try:
        if kind == "skimage":
            image = _skimage_image(name)
        elif kind == "matplotlib":
            image = _matplotlib_image(name)
        else:
            with Image.open(source) as opened:
                opened.load()
                image = opened
    except (OSError, AttributeError, ValueError) as error:
        raise DatasetError(f"cannot load image {sample.id} from {sample.source}: {error}") from error
    image = image.convert("RGB")
    return apply_view(image, view) if view else image


def _skimage_image(name: str) -> Image.Image:
    import numpy as np
    from skimage import data

    array = getattr(data, name)()
    # stereo_motorcycle returns (left, right, disparity); the left view is the photo.
    if isinstance(array, tuple):
        array = array[0]
    if array.dtype != np.uint8:
        raise ValueError(f"skimage.data.{name} is {array.dtype}, not an 8-bit photo")
    return Image.fromarray(array)


def _matplotlib_image(name: str) -> Image.Image:
    from matplotlib import cbook

    with cbook.get_sample_data(name) as handle:
        image = Image.open(handle)
        image.load()
    return image


def encode_image(image: Image.Image, format: str = "PNG") -> bytes:
    """Encode an image for HTTP or gRPC upload; PNG keeps pixels identical to in-process runs."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()
