"""Taxonomies: ordered class lists with stable ids, names and synonyms.

A taxonomy comes from a built-in data file (`imagenet-1k`, `imagenet-21k`) or
from a user's JSON or CSV file; `mapping.taxonomy_files` reads and validates
those files. The content hash identifies a taxonomy in index manifests, so any
change to a class rebuilds the cached index.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mapping.normalize import normalize_text


class TaxonomyError(ValueError):
    """Raised for an invalid taxonomy file or definition; the message names file, line, value and fix."""


@dataclass(frozen=True, slots=True)
class TaxonomyClass:
    """One class: stable string id, position in the taxonomy, display name and alternatives."""

    id: str
    index: int
    name: str
    synonyms: tuple[str, ...] = ()
    description: str | None = None
    parents: tuple[str, ...] = ()

    def all_names(self) -> tuple[str, ...]:
        """Return the display name followed by the synonyms."""
        return (self.name, *self.synonyms)


class Taxonomy:
    """An immutable, ordered list of classes with lookup by id, index and name.

    Class `index` values must be 0..n-1 in list order; ids must be unique and
    names non-empty. Names may repeat across classes (ImageNet's two "crane"
    classes); `lookup_name` returns every class sharing a name.
    """

    def __init__(self, name: str, classes: Sequence[TaxonomyClass], source: str = "<memory>") -> None:
        if not name.strip():
            raise TaxonomyError(f"{source}: the taxonomy name is empty; give it a name")
        if not classes:
            raise TaxonomyError(f"{source}: the taxonomy has no classes; add at least one class")

        by_id: dict[str, TaxonomyClass] = {}
        for position, cls in enumerate(classes):
            if cls.index != position:
                raise TaxonomyError(
                    f"{source}: class {cls.id!r} has index {cls.index} but is number {position} in the list; "
                    "indexes must run 0..n-1 in list order"
                )
            if not cls.id.strip():
                raise TaxonomyError(f"{source}: class at index {position} has an empty id; give every class an id")
            if not cls.name.strip():
                raise TaxonomyError(f"{source}: class {cls.id!r} has an empty name; give every class a name")
            if cls.id in by_id:
                raise TaxonomyError(f"{source}: duplicate class id {cls.id!r} at index {position}; ids must be unique")
            by_id[cls.id] = cls

        self.name = name
        self.source = source
        self.classes: list[TaxonomyClass] = list(classes)
        self._by_id = by_id
        self._by_name: dict[str, list[TaxonomyClass]] = {}
        for cls in self.classes:
            for key in dict.fromkeys(normalize_text(text) for text in cls.all_names()):
                if key:
                    self._by_name.setdefault(key, []).append(cls)
        self.hash = self._content_hash()

    def _content_hash(self) -> str:
        # Canonical JSON of every field except the taxonomy name, so renaming a
        # file keeps its cached index valid while any class change invalidates it.
        payload = [
            [cls.id, cls.index, cls.name, list(cls.synonyms), cls.description, list(cls.parents)]
            for cls in self.classes
        ]
        encoded = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return hashlib.sha256(encoded).hexdigest()

    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self) -> Iterator[TaxonomyClass]:
        return iter(self.classes)

    def __contains__(self, class_id: object) -> bool:
        return class_id in self._by_id

    def __repr__(self) -> str:
        return f"Taxonomy(name={self.name!r}, classes={len(self)}, hash={self.hash[:12]})"

    def by_id(self, class_id: str) -> TaxonomyClass:
        """Return the class with id `class_id`; raise KeyError naming the id if it is unknown."""
        try:
            return self._by_id[class_id]
        except KeyError:
            raise KeyError(f"unknown class id {class_id!r} in taxonomy {self.name!r}") from None

    def by_index(self, index: int) -> TaxonomyClass:
        """Return the class at `index`; raise IndexError if it is out of range."""
        if not 0 <= index < len(self.classes):
            raise IndexError(f"class index {index} is out of range 0..{len(self.classes) - 1} in taxonomy {self.name!r}")
        return self.classes[index]

    def lookup_name(self, name: str) -> list[TaxonomyClass]:
        """Return every class whose normalized name or synonym equals that of `name`, in index order."""
        return list(self._by_name.get(normalize_text(name), ()))

    def names_by_key(self) -> dict[str, list[TaxonomyClass]]:
        """Return the normalized-name table (key -> classes); callers must not modify it."""
        return self._by_name
