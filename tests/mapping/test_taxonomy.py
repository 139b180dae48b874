"""Taxonomy loading, validation errors, hashing and the built-in ImageNet data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mapping import Taxonomy, TaxonomyClass, TaxonomyError, builtin_taxonomies, load_taxonomy

REPO_ROOT = Path(__file__).resolve().parents[2]


def write_json(path: Path, classes: list[dict], name: str | None = "pets") -> Path:
    document: dict | list = {"name": name, "classes": classes} if name else classes
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    return path


def test_builtin_names() -> None:
    assert {"imagenet-1k", "imagenet-21k"} <= set(builtin_taxonomies())


def test_imagenet_1k_content() -> None:
    taxonomy = load_taxonomy("imagenet-1k")

    assert taxonomy.name == "imagenet-1k"
    assert len(taxonomy) == 1000
    assert taxonomy.by_index(0).id == "n01440764"
    tabby = taxonomy.by_id("n02123045")
    assert tabby.index == 281
    assert tabby.name == "tabby cat"
    assert "tabby" in tabby.synonyms
    assert tabby.description == "a cat with a grey or tawny coat mottled with black"
    assert [cls.index for cls in taxonomy.lookup_name("crane")] == [134, 517]
    assert [cls.index for cls in taxonomy.lookup_name("Sunglasses")] == [836, 837]
    assert [cls.index for cls in taxonomy.lookup_name("missile")] == [657, 744]
    assert [cls.index for cls in taxonomy.lookup_name("maillot")] == [638, 639]
    assert taxonomy.lookup_name("no such class") == []


def test_imagenet_21k_from_lemmas() -> None:
    taxonomy = load_taxonomy("imagenet-21k")
    imagenet_1k = load_taxonomy("imagenet-1k")

    assert len(taxonomy) == 21844
    assert taxonomy.by_id("n01440764").name == "tench"
    assert taxonomy.by_id("n01440764").synonyms == ("Tinca tinca",)
    assert all(cls.id in taxonomy for cls in imagenet_1k.classes)
    ids = [cls.id for cls in taxonomy.classes]
    assert ids == sorted(ids)


def test_builtin_is_shared_per_process() -> None:
    assert load_taxonomy("imagenet-1k") is load_taxonomy("imagenet-1k")


def test_hash_is_stable_and_content_based(tmp_path: Path) -> None:
    classes = [{"id": "cat", "name": "cat", "synonyms": ["kitty"]}, {"id": "dog", "name": "dog"}]
    first = load_taxonomy(write_json(tmp_path / "a.json", classes))
    renamed = load_taxonomy(write_json(tmp_path / "b.json", classes, name="other"))
    classes[1]["synonyms"] = ["puppy"]
    changed = load_taxonomy(write_json(tmp_path / "c.json", classes))

    assert first.hash == renamed.hash
    assert first.hash != changed.hash
    assert len(first.hash) == 64


def test_json_bare_list_and_fields(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "animals.json",
        [
            {"id": "cat", "index": 0, "name": "cat", "synonyms": ["kitty"], "description": "a small feline", "parents": ["animal"]},
            {"id": "dog", "name": "dog"},
        ],
        name=None,
    )
    taxonomy = load_taxonomy(path)

    assert taxonomy.name == "animals"
    assert taxonomy.by_id("cat") == TaxonomyClass("cat", 0, "cat", ("kitty",), "a small feline", ("animal",))
    assert taxonomy.by_index(1).parents == ()


def test_csv_taxonomy(tmp_path: Path) -> None:
    path = tmp_path / "pets.csv"
    path.write_text("id,name,synonyms,description,parents\ncat,cat,kitty|puss,a feline,animal\ndog,dog,,,\n", encoding="utf-8")
    taxonomy = load_taxonomy(path)

    assert taxonomy.name == "pets"
    assert taxonomy.by_id("cat").synonyms == ("kitty", "puss")
    assert taxonomy.by_id("cat").parents == ("animal",)
    assert taxonomy.by_id("dog").description is None
    assert [cls.id for cls in taxonomy.lookup_name("Kitty")] == ["cat"]


def test_csv_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffid,name\ncat,cat\n".encode("utf-8"))

    assert load_taxonomy(path).by_index(0).name == "cat"


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("id,name\ncat,cat\ncat,kitty\n", [":3:", "duplicate class id 'cat'", "unique"]),
        ("id,name\ncat,cat\ndog,\n", [":3:", "empty name", "'name'"]),
        ("id,label\ncat,cat\n", [":1:", "missing column 'name'"]),
        ("id,name,colour\ncat,cat,red\n", [":1:", "unknown column 'colour'"]),
        ("id,name,index\ncat,cat,0\ndog,dog,5\n", [":3:", "index '5'"]),
        ("id,name\ncat,cat,extra\n", [":2:", "more cells"]),
        ("id,name\n,cat\n", [":2:", "empty id"]),
    ],
)
def test_csv_errors_name_line_and_fix(tmp_path: Path, content: str, fragments: list[str]) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(TaxonomyError) as error:
        load_taxonomy(path)
    message = str(error.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_wrong_encoding_names_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("id,name\ncat,cat\ncafe,caf\u00e9\n".encode("latin-1"))

    with pytest.raises(TaxonomyError, match=r"latin1\.csv:3: invalid UTF-8 .*save the file as UTF-8"):
        load_taxonomy(path)


@pytest.mark.parametrize(
    ("classes", "fragments"),
    [
        ([{"id": "cat", "name": "cat"}, {"id": "cat", "name": "kitty"}], ["duplicate class id 'cat'", "class number 0"]),
        ([{"id": "cat", "name": "  "}], ["empty or non-string name"]),
        ([{"id": "cat"}], ["missing field 'name'"]),
        ([{"id": "cat", "name": "cat", "index": 3}], ["index 3", "0..n-1"]),
        ([{"id": "cat", "name": "cat", "synonyms": [1, 2]}], ["'synonyms' must be a list of strings"]),
        (["cat"], ["expected an object"]),
    ],
)
def test_json_errors(tmp_path: Path, classes: list, fragments: list[str]) -> None:
    path = write_json(tmp_path / "bad.json", classes)

    with pytest.raises(TaxonomyError) as error:
        load_taxonomy(path)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_json_duplicate_points_at_second_line(tmp_path: Path) -> None:
    path = write_json(tmp_path / "dup.json", [{"id": "cat", "name": "cat"}, {"id": "cat", "name": "kitty"}])
    second_line = next(number for number, line in enumerate(path.read_text().splitlines(), 1) if '"kitty"' in line) - 1

    with pytest.raises(TaxonomyError, match=rf"dup\.json:{second_line}: duplicate"):
        load_taxonomy(path)


def test_invalid_json_syntax(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"classes": [\n{"id": "cat",,}\n]}', encoding="utf-8")

    with pytest.raises(TaxonomyError, match=r"broken\.json:2: invalid JSON"):
        load_taxonomy(path)


def test_unknown_name_lists_builtins() -> None:
    with pytest.raises(TaxonomyError, match="imagenet-1k"):
        load_taxonomy("imagenet-5k")


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "classes.txt"
    path.write_text("cat\n", encoding="utf-8")

    with pytest.raises(TaxonomyError, match="use a .json or .csv file"):
        load_taxonomy(path)


def test_taxonomy_constructor_checks() -> None:
    with pytest.raises(TaxonomyError, match="no classes"):
        Taxonomy("empty", [])
    with pytest.raises(TaxonomyError, match="index 1 but is number 0"):
        Taxonomy("bad", [TaxonomyClass("a", 1, "a")])
    with pytest.raises(KeyError, match="unknown class id 'zebra'"):
        Taxonomy("ok", [TaxonomyClass("a", 0, "a")]).by_id("zebra")
    with pytest.raises(IndexError):
        Taxonomy("ok", [TaxonomyClass("a", 0, "a")]).by_index(1)


SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the ImageNet metadata lists are not beside this checkout")
def test_build_script_reproduces_committed_data(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "build_taxonomies.py"), "--source", str(SHARED_DATA), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )

    for name in ("imagenet-1k.json", "imagenet-21k-lemmas.txt.gz", "imagenet-m-confusions.json"):
        assert (tmp_path / name).read_bytes() == (REPO_ROOT / "mapping" / "data" / name).read_bytes(), name


def test_import_stays_light() -> None:
    # The service and CLI import mapping at startup; torch, FAISS and BentoML must load only when needed.
    code = "import sys, mapping; mapping.load_taxonomy('imagenet-1k'); print(sorted(m for m in ('torch', 'faiss', 'bentoml', 'sentence_transformers') if m in sys.modules))"
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO_ROOT).stdout

    assert output.strip() == "[]"
