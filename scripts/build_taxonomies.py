"""Regenerate the committed taxonomy data files in mapping/data/ from the ImageNet metadata lists.

Usage: python scripts/build_taxonomies.py [--source DIR] [--out DIR]

Inputs (in --source, by default ../shared/data beside the repository):
  imagenet_synsets.txt               1000 sorted wnids; line number = class index
  imagenet_synset_to_lemma.txt       wnid<TAB>WordNet lemmas for all 21,844 synsets
  imagenet_synset_to_definition.txt  wnid<TAB>WordNet gloss
  clip_imagenet_classes.json         CLIP's 1000 readable class names
  modified_classnames.txt            the CTU Prague revision of the CLIP names (Python literals)
  class_confusion_wnids.json         ImageNet-M confusion pairs [wnid, wnid, count]

Outputs:
  imagenet-1k.json                   display name = CLIP name; synonyms = lemmas, revised name,
                                     names without their parenthetical; description = gloss
  imagenet-21k-lemmas.txt.gz         the lemma list, gzipped with a fixed timestamp
  imagenet-m-confusions.json         the confusion pairs, unchanged in content

The outputs are deterministic, so rerunning the script on the same inputs
leaves `git diff` empty. Name collisions are kept and listed on stdout.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mapping.normalize import normalize_text  # noqa: E402

_PARENTHETICAL = re.compile(r"\s*\([^)]*\)\s*")


def _read_tab_file(path: Path) -> dict[str, str]:
    table: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            key, _, value = line.partition("\t")
            table[key.strip()] = value.strip()
    return table


def _unique_names(display_name: str, candidates: list[str]) -> list[str]:
    """Keep candidates whose normalized form differs from the display name and from earlier ones."""
    seen = {normalize_text(display_name)}
    names: list[str] = []
    for candidate in candidates:
        key = normalize_text(candidate)
        if key and key not in seen:
            seen.add(key)
            names.append(candidate.strip())
    return names


def build_imagenet_1k(source: Path) -> dict:
    wnids = [line.strip() for line in (source / "imagenet_synsets.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    lemmas = _read_tab_file(source / "imagenet_synset_to_lemma.txt")
    definitions = _read_tab_file(source / "imagenet_synset_to_definition.txt")
    clip_names = json.loads((source / "clip_imagenet_classes.json").read_text(encoding="utf-8"))
    revised_names = ast.literal_eval("[" + (source / "modified_classnames.txt").read_text(encoding="utf-8") + "]")
    if not len(wnids) == len(clip_names) == len(revised_names) == 1000:
        raise SystemExit(f"expected 1000 classes in every list, got {len(wnids)}, {len(clip_names)}, {len(revised_names)}")

    classes = []
    for index, wnid in enumerate(wnids):
        display_name = clip_names[index]
        wordnet_lemmas = [lemma.strip() for lemma in lemmas[wnid].split(",")]
        without_parenthetical = [_PARENTHETICAL.sub(" ", name).strip() for name in (display_name, revised_names[index])]
        synonyms = _unique_names(display_name, [*wordnet_lemmas, revised_names[index], *without_parenthetical])
        classes.append(
            {
                "id": wnid,
                "index": index,
                "name": display_name,
                "synonyms": synonyms,
                "description": definitions.get(wnid),
                "parents": [],
            }
        )
    return {
        "name": "imagenet-1k",
        "description": "ImageNet-1k (ILSVRC-2012) classes: WordNet ids, CLIP display names, WordNet lemmas and glosses.",
        "classes": classes,
    }


def report_collisions(document: dict) -> None:
    owners: dict[str, set[int]] = {}
    for cls in document["classes"]:
        for name in [cls["name"], *cls["synonyms"]]:
            owners.setdefault(normalize_text(name), set()).add(cls["index"])
    shared = {key: sorted(indexes) for key, indexes in owners.items() if len(indexes) > 1}
    print(f"{len(shared)} normalized names are shared by several classes (kept, mapped as ambiguous):")
    for key, indexes in sorted(shared.items()):
        print(f"  {key!r}: {indexes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=REPO_ROOT.parent / "shared" / "data", help="folder with the ImageNet metadata lists")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "mapping" / "data", help="folder to write the data files to")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    document = build_imagenet_1k(args.source)
    (args.out / "imagenet-1k.json").write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    report_collisions(document)

    # mtime=0 and no file name in the gzip header keep the archive byte-identical across runs.
    lemma_bytes = (args.source / "imagenet_synset_to_lemma.txt").read_bytes()
    with open(args.out / "imagenet-21k-lemmas.txt.gz", "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=9, mtime=0) as archive:
        archive.write(lemma_bytes)

    pairs = json.loads((args.source / "class_confusion_wnids.json").read_text(encoding="utf-8"))
    lines = ",\n".join(json.dumps(pair) for pair in pairs)
    (args.out / "imagenet-m-confusions.json").write_text(f"[\n{lines}\n]\n", encoding="utf-8")
    lemma_lines = lemma_bytes.count(b"\n")
    print(f"wrote {len(document['classes'])} classes, {lemma_lines} lemma lines and {len(pairs)} confusion pairs to {args.out}")


if __name__ == "__main__":
    main()
