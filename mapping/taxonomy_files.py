"""Reading taxonomies from JSON and CSV files and from the built-in data.

JSON layout, either an object or a bare list of classes:

    {"name": "pets", "classes": [
        {"id": "cat", "name": "cat", "synonyms": ["kitty"], "description": "...", "parents": ["animal"]},
        ...]}

`index` may be given per class and must then equal the position in the list.

CSV layout: a header row with at least `id` and `name`; optional columns
`index`, `synonyms`, `description` and `parents`. Several synonyms or parents
in one cell are separated by "|".

Every error is a TaxonomyError naming the file, the line, the offending value
and what to change.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mapping.taxonomy import Taxonomy, TaxonomyClass, TaxonomyError

DATA_DIR = Path(__file__).with_name("data")
IMAGENET_1K_FILE = DATA_DIR / "imagenet-1k.json"
IMAGENET_21K_LEMMAS_FILE = DATA_DIR / "imagenet-21k-lemmas.txt.gz"
CSV_LIST_SEPARATOR = "|"
CSV_COLUMNS = ("id", "name", "index", "synonyms", "description", "parents")

_BUILTIN_CACHE: dict[str, Taxonomy] = {}
_BUILTIN_LOCK = threading.Lock()


def builtin_taxonomies() -> list[str]:
    """Return the names `load_taxonomy` accepts without a file path."""
    return ["imagenet-1k", "imagenet-21k"]


def load_taxonomy(name_or_path: str | Path) -> Taxonomy:
    """Load a built-in taxonomy by name, or a taxonomy from a .json or .csv file.

    Built-in taxonomies are parsed once per process and shared; file
    taxonomies are read on every call, so edits to the file take effect.
    """
    text = str(name_or_path)
    if text in builtin_taxonomies():
        with _BUILTIN_LOCK:
            if text not in _BUILTIN_CACHE:
                _BUILTIN_CACHE[text] = _load_builtin(text)
            return _BUILTIN_CACHE[text]

    path = Path(text).expanduser()
    if not path.is_file():
        raise TaxonomyError(
            f"unknown taxonomy {text!r}: not a built-in name ({', '.join(builtin_taxonomies())}) "
            "and no such file; give a built-in name or the path of a .json or .csv file"
        )
    suffix = path.suffix.lower()
    if suffix == ".json":
        return read_json_taxonomy(path)
    if suffix == ".csv":
        return read_csv_taxonomy(path)
    raise TaxonomyError(f"{path}: unsupported taxonomy file type {suffix!r}; use a .json or .csv file")


def _load_builtin(name: str) -> Taxonomy:
    if name == "imagenet-1k":
        return read_json_taxonomy(IMAGENET_1K_FILE)
    return imagenet_21k_from_lemmas(IMAGENET_21K_LEMMAS_FILE)


def _decode(path: Path) -> str:
    """Read `path` as UTF-8 (a BOM is allowed) and report the line of the first invalid byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        bad = data[error.start : error.start + 4]
        raise TaxonomyError(
            f"{path}:{line}: invalid UTF-8 byte sequence {bad!r}; save the file as UTF-8"
        ) from error


def _line_of_id(text: str, class_id: Any, occurrence: int) -> int | None:
    """Return the 1-based line of the `occurrence`-th `"id": <class_id>` in JSON `text`."""
    pattern = re.compile(r'"id"\s*:\s*' + re.escape(json.dumps(class_id)))
    for number, match in enumerate(pattern.finditer(text), start=1):
        if number == occurrence:
            return text.count("\n", 0, match.start()) + 1
    return None


def _locate(text: str, path: Path, class_id: Any, occurrence: int, fallback: str) -> str:
    """Return "file:line" of a class id for an error message; scanning the text is fine on the error path."""
    line = _line_of_id(text, class_id, occurrence)
    return f"{path}:{line}" if line is not None else fallback


def _string_list(value: Any, where: str, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TaxonomyError(f"{where}: field {field!r} must be a list of strings, got {value!r}")
    return tuple(item.strip() for item in value if item.strip())


def read_json_taxonomy(path: Path, name: str | None = None) -> Taxonomy:
    """Read a taxonomy from a JSON file (layout in the module docstring)."""
    text = _decode(path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise TaxonomyError(f"{path}:{error.lineno}: invalid JSON ({error.msg}); fix the syntax at that line") from error

    if isinstance(document, dict):
        raw_classes = document.get("classes")
        taxonomy_name = name or document.get("name") or path.stem
        if raw_classes is None:
            raise TaxonomyError(f"{path}: missing key 'classes'; the top-level object needs a 'classes' list")
    else:
        raw_classes = document
        taxonomy_name = name or path.stem
    if not isinstance(raw_classes, list):
        raise TaxonomyError(f"{path}: 'classes' must be a list of objects, got {type(raw_classes).__name__}")

    classes: list[TaxonomyClass] = []
    seen_ids: dict[str, int] = {}
    for position, item in enumerate(raw_classes):
        where = f"{path}: class number {position}"
        if not isinstance(item, dict):
            raise TaxonomyError(f"{where}: expected an object with 'id' and 'name', got {item!r}")
        for field in ("id", "name"):
            if field not in item:
                raise TaxonomyError(f"{where}: missing field {field!r} in {item!r}; every class needs 'id' and 'name'")

        class_id = str(item["id"]).strip()
        if class_id in seen_ids:
            raise TaxonomyError(
                f"{_locate(text, path, item['id'], 2, where)}: duplicate class id {class_id!r} (first used by class number {seen_ids[class_id]}); "
                "give each class a unique id"
            )
        seen_ids[class_id] = position

        name_value = item["name"]
        if not isinstance(name_value, str) or not name_value.strip():
            raise TaxonomyError(f"{_locate(text, path, item['id'], 1, where)}: class {class_id!r} has an empty or non-string name {name_value!r}; set 'name'")

        index = item.get("index", position)
        if not isinstance(index, int) or isinstance(index, bool) or index != position:
            raise TaxonomyError(
                f"{_locate(text, path, item['id'], 1, where)}: class {class_id!r} has index {index!r} but is number {position} in the list; "
                "remove 'index' or make indexes run 0..n-1 in list order"
            )
        description = item.get("description")
        if description is not None and not isinstance(description, str):
            raise TaxonomyError(f"{_locate(text, path, item['id'], 1, where)}: 'description' of class {class_id!r} must be a string, got {description!r}")

        classes.append(
            TaxonomyClass(
                id=class_id,
                index=position,
                name=name_value.strip(),
                synonyms=_string_list(item.get("synonyms"), where, "synonyms"),
                description=description.strip() if description else None,
                parents=_string_list(item.get("parents"), where, "parents"),
            )
        )
    return Taxonomy(str(taxonomy_name), classes, source=str(path))


def _split_cell(cell: str | None) -> tuple[str, ...]:
    if not cell:
        return ()
    return tuple(part.strip() for part in cell.split(CSV_LIST_SEPARATOR) if part.strip())


def read_csv_taxonomy(path: Path, name: str | None = None) -> Taxonomy:
    """Read a taxonomy from a CSV file with a header row (layout in the module docstring)."""
    text = _decode(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [column.strip().lower() for column in (reader.fieldnames or [])]
    for required in ("id", "name"):
        if required not in header:
            raise TaxonomyError(
                f"{path}:1: missing column {required!r} in header {reader.fieldnames!r}; "
                f"the header needs 'id' and 'name' (optional: {', '.join(CSV_COLUMNS[2:])})"
            )
    unknown = [column for column in header if column not in CSV_COLUMNS]
    if unknown:
        raise TaxonomyError(f"{path}:1: unknown column {unknown[0]!r}; allowed columns are {', '.join(CSV_COLUMNS)}")
    reader.fieldnames = header

    classes: list[TaxonomyClass] = []
    seen_ids: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if None in row:
            raise TaxonomyError(f"{path}:{line}: more cells than header columns in {row[None]!r}; quote cells that contain commas")
        class_id = (row.get("id") or "").strip()
        class_name = (row.get("name") or "").strip()
        if not class_id:
            raise TaxonomyError(f"{path}:{line}: empty id in row {row!r}; every row needs an id")
        if class_id in seen_ids:
            raise TaxonomyError(
                f"{path}:{line}: duplicate class id {class_id!r} (first on line {seen_ids[class_id]}); give each class a unique id"
            )
        seen_ids[class_id] = line
        if not class_name:
            raise TaxonomyError(f"{path}:{line}: class {class_id!r} has an empty name; fill the 'name' column")

        position = len(classes)
        index_cell = (row.get("index") or "").strip()
        if index_cell and index_cell != str(position):
            raise TaxonomyError(
                f"{path}:{line}: class {class_id!r} has index {index_cell!r} but is row number {position}; "
                "leave 'index' empty or make indexes run 0..n-1 in row order"
            )
        description = (row.get("description") or "").strip() or None
        classes.append(
            TaxonomyClass(
                id=class_id,
                index=position,
                name=class_name,
                synonyms=_split_cell(row.get("synonyms")),
                description=description,
                parents=_split_cell(row.get("parents")),
            )
        )
    return Taxonomy(name or path.stem, classes, source=str(path))


def parse_lemma_lines(lines: Iterable[str], source: str) -> list[TaxonomyClass]:
    """Turn `wnid<TAB>lemma, lemma, ...` lines into classes named by their first lemma."""
    classes: list[TaxonomyClass] = []
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\n")
        if not line:
            continue
        wnid, separator, lemma_text = line.partition("\t")
        lemmas = [lemma.strip() for lemma in lemma_text.split(",") if lemma.strip()]
        if not separator or not lemmas:
            raise TaxonomyError(f"{source}:{number}: expected 'wnid<TAB>lemma, lemma', got {line!r}")
        classes.append(TaxonomyClass(id=wnid, index=len(classes), name=lemmas[0], synonyms=tuple(lemmas[1:])))
    return classes


def imagenet_21k_from_lemmas(path: Path) -> Taxonomy:
    """Build the ImageNet-21k taxonomy from the gzipped WordNet lemma list.

    Class indexes follow the sorted wnid order of the list (21,844 synsets);
    they are not the output indexes of any particular 21k checkpoint.
    """
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        classes = parse_lemma_lines(handle, str(path))
    return Taxonomy("imagenet-21k", classes, source=str(path))
