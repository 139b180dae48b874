"""Class-name lookup for autocomplete and for labels that labelers type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.assist.schemas import LabelOption

if TYPE_CHECKING:
    from mapping import Taxonomy


def _normalize(text: str) -> str:
    return " ".join(text.casefold().replace("_", " ").split())


@dataclass(frozen=True)
class _Entry:
    id: str
    name: str
    # Normalized name and synonyms, the name first.
    keys: tuple[str, ...]


class LabelIndex:
    """Search a taxonomy's class names and synonyms by prefix and substring."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy_name = taxonomy.name
        self._entries: list[_Entry] = []
        self._by_key: dict[str, _Entry] = {}
        for cls in taxonomy.classes:
            keys = tuple(dict.fromkeys(_normalize(name) for name in (cls.name, *cls.synonyms) if name.strip()))
            entry = _Entry(id=cls.id, name=cls.name, keys=keys)
            self._entries.append(entry)
            self._by_key.setdefault(cls.id.casefold(), entry)
            for key in keys:
                # The first class in taxonomy order keeps a name that several classes share.
                self._by_key.setdefault(key, entry)

    def search(self, query: str, limit: int = 10) -> list[LabelOption]:
        """Return classes matching `query`: name prefixes first, then word prefixes, then substrings."""
        needle = _normalize(query)
        if not needle or limit <= 0:
            return []

        tiers: list[list[_Entry]] = [[], [], []]
        for entry in self._entries:
            if any(key.startswith(needle) for key in entry.keys) or entry.id.casefold() == needle:
                tiers[0].append(entry)
            elif any(f" {needle}" in f" {key}" for key in entry.keys):
                tiers[1].append(entry)
            elif any(needle in key for key in entry.keys):
                tiers[2].append(entry)

        options: list[LabelOption] = []
        for tier in tiers:
            # Shorter names first within a tier, so "cat" ranks above "catamaran".
            for entry in sorted(tier, key=lambda item: (len(item.name), item.name)):
                options.append(LabelOption(id=entry.id, name=entry.name))
                if len(options) == limit:
                    return options
        return options

    def resolve(self, text: str) -> LabelOption | None:
        """Return the class whose id, name or synonym equals `text` after normalization, or None."""
        entry = self._by_key.get(text.strip().casefold()) or self._by_key.get(_normalize(text))
        return LabelOption(id=entry.id, name=entry.name) if entry else None
