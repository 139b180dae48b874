"""Mapping of free-form answers to taxonomy class ids.

Order of attempts for one answer:
1. Parsing: wrappers removed; refusals and empty answers abstain.
2. Name match: each lookup key of the answer (full text, without a leading
   count, head phrase before trailing context) is looked up among the
   normalized display names and synonyms, then in singular form. A hit on a
   display name is "exact", on a synonym "synonym". A name shared by several
   classes returns all of them and marks the result ambiguous.
3. Embedding: the normalized answer is encoded and the nearest classes are
   ranked by cosine similarity. Under `out_of_list_threshold` the result is
   out of list.
The mapper never picks a class at random: an answer that maps to nothing is
reported as abstain or out of list.

A per-request candidate list restricts all steps to those classes. An answer
that names a class outside the candidates is out of list, with the nearest
candidates listed for transparency.

NOTE: with all-MiniLM-L6-v2, unrelated short answers can still score just
over 0.5 ("the moon" -> scorpion, 0.515). Generic answers such as "cat" or
"dog" land on a class that only shares the word (the red panda through its
synonym "cat bear", "hot dog") by a margin under 0.02. Callers should read
`margin`. An
embedding answer nearer to a class outside the candidates still maps to the
best candidate when that candidate clears the threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mapping.distractors import choose_distractors
from mapping.encoder import TextEncoder
from mapping.index import ClassIndex, load_or_build_index
from mapping.normalize import normalize_text, singular_key
from mapping.parsing import ParsedAnswer, is_non_answer_key, parse_answer, parse_option_letter, split_answers
from mapping.results import LabelScore, MappingMethod, MappingResult
from mapping.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

# Embedding results whose top two classes score closer than this are ambiguous;
# in practice that happens when two classes share an embedded name.
AMBIGUITY_MARGIN = 1e-4
# Longer answers are never bare class names (the longest ImageNet-21k name is
# far shorter), so they skip the plain-name lookup.
_PLAIN_NAME_MAX_CHARS = 200
_LIST_WORDS = (" and ", " & ", " plus ", " as well as ", " along with ", " together with ", ",", ";", "/")


class Mapper:
    """Maps answers of one taxonomy to class ids; thread-safe after construction."""

    def __init__(
        self,
        taxonomy: Taxonomy,
        encoder: TextEncoder,
        index_kind: str = "flat",
        cache_dir: Path | None = None,
        out_of_list_threshold: float = 0.5,
        templates: Sequence[str] = (),
    ) -> None:
        self.taxonomy = taxonomy
        self.encoder = encoder
        self.index_kind = index_kind
        self.out_of_list_threshold = out_of_list_threshold
        self.templates = tuple(templates)
        self.class_index: ClassIndex
        self.class_index, self.index_status = load_or_build_index(taxonomy, encoder, index_kind, cache_dir, self.templates)

        # One shared score-1.0 label per class keeps the name-match path free of allocations.
        self._name_labels = [LabelScore(cls.id, cls.index, cls.name, 1.0) for cls in taxonomy.classes]
        self._display_keys = [normalize_text(cls.name) for cls in taxonomy.classes]
        self._exact: dict[str, tuple[int, ...]] = {
            key: tuple(cls.index for cls in classes) for key, classes in taxonomy.names_by_key().items()
        }
        # "exact" when the key is the display name of one of its classes, else "synonym".
        self._exact_method: dict[str, MappingMethod] = {
            key: "exact" if any(self._display_keys[i] == key for i in indexes) else "synonym"
            for key, indexes in self._exact.items()
        }
        singular: dict[str, list[int]] = {}
        for key, indexes in self._exact.items():
            bucket = singular.setdefault(singular_key(key), [])
            bucket.extend(i for i in indexes if i not in bucket)
        self._singular = {key: tuple(sorted(indexes)) for key, indexes in singular.items()}
        # Names containing a list word ("mortar and pestle") are never split by map_multilabel.
        self._protected = sorted(
            {name.lower() for cls in taxonomy.classes for name in cls.all_names() if any(word in f" {name.lower()} " for word in _LIST_WORDS[:6])},
            key=len,
            reverse=True,
        )
        logger.info("mapper ready for taxonomy %s (%d classes, %s index %s)", taxonomy.name, len(taxonomy), index_kind, self.index_status)

    # Name matching.

    def _match_names(self, parsed: ParsedAnswer) -> tuple[tuple[int, ...], MappingMethod] | None:
        for table in (self._exact, self._singular):
            for key in parsed.keys:
                lookup = key if table is self._exact else singular_key(key)
                indexes = table.get(lookup)
                if indexes:
                    is_display = any(self._display_keys[i] == key or singular_key(self._display_keys[i]) == lookup for i in indexes)
                    return indexes, "exact" if is_display else "synonym"
        return None

    def _is_name(self, key: str) -> bool:
        """Return True when the whole normalized text is a class name or synonym, singular or plural."""
        return key in self._exact or singular_key(key) in self._singular

    def _match_plain_name(self, answer: str, allowed: set[int] | None) -> MappingResult | None:
        """Map an answer that is exactly a class name ("Tabby cat.") without the full parser.

        Most answers to an open prompt are a bare name, and this path skips the
        wrapper and refusal patterns. It gives the same result as the full path
        because no normalized class name starts with a wrapper phrase (a test
        checks every name of the built-in taxonomies). Names that are also
        non-answers, such as the ImageNet-21k lemma "unknown", take the full
        path and abstain.
        """
        # Multi-line answers go to the parser, which keeps only the first line.
        if len(answer) > _PLAIN_NAME_MAX_CHARS or "\n" in answer:
            return None
        key = normalize_text(answer)
        indexes = self._exact.get(key)
        if indexes is None or is_non_answer_key(key):
            return None
        if allowed is not None:
            indexes = tuple(i for i in indexes if i in allowed)
            if not indexes:
                return None
        return MappingResult(
            answer=answer,
            normalized=key,
            labels=[self._name_labels[i] for i in indexes],
            method=self._exact_method[key],
            similarity=1.0,
            ambiguous=len(indexes) > 1,
        )

    def _name_result(self, parsed: ParsedAnswer, indexes: Sequence[int], method: MappingMethod) -> MappingResult:
        return MappingResult(
            answer=parsed.raw,
            normalized=parsed.normalized,
            labels=[self._name_labels[i] for i in indexes],
            method=method,
            margin=0.0,
            similarity=1.0,
            ambiguous=len(indexes) > 1,
        )

    @staticmethod
    def _abstain_result(parsed: ParsedAnswer) -> MappingResult:
        return MappingResult(answer=parsed.raw, normalized=parsed.normalized, method="none", abstain=True)

    # Embedding search.

    def _search(self, texts: Sequence[str], num_classes: int, candidates: Sequence[int] | None) -> list[list[tuple[int, float]]]:
        unique = list(dict.fromkeys(texts))
        vectors = self.encoder.encode(unique)
        if candidates is None:
            ranked = self.class_index.search(vectors, num_classes)
        else:
            ranked = self.class_index.search_subset(vectors, candidates, num_classes)
        by_text = dict(zip(unique, ranked))
        return [by_text[text] for text in texts]

    def _embedding_result(self, parsed: ParsedAnswer, ranked: list[tuple[int, float]], top_k: int, force_out_of_list: bool) -> MappingResult:
        labels = [LabelScore(self.taxonomy.classes[i].id, i, self.taxonomy.classes[i].name, score) for i, score in ranked[:top_k]]
        similarity = ranked[0][1] if ranked else 0.0
        margin = ranked[0][1] - ranked[1][1] if len(ranked) > 1 else 0.0
        out_of_list = force_out_of_list or not ranked or similarity < self.out_of_list_threshold
        return MappingResult(
            answer=parsed.raw,
            normalized=parsed.normalized,
            labels=labels,
            method="none" if out_of_list else "embedding",
            margin=margin,
            similarity=similarity,
            out_of_list=out_of_list,
            ambiguous=len(ranked) > 1 and margin < AMBIGUITY_MARGIN,
        )

    # Public API.

    def resolve_candidates(self, items: Sequence[str]) -> list[str]:
        """Turn class ids or names into unique class ids, in the order given.

        A name shared by several classes ("crane") adds all of them. Raises
        ValueError naming the first item that is neither an id nor a name.
        """
        ids: dict[str, None] = {}
        for item in items:
            if item in self.taxonomy:
                ids[item] = None
                continue
            matches = self.taxonomy.lookup_name(item)
            if not matches:
                raise ValueError(f"unknown candidate {item!r}: not a class id or name in taxonomy {self.taxonomy.name!r}")
            for cls in matches:
                ids[cls.id] = None
        return list(ids)

    def _candidate_indexes(self, candidates: Sequence[str] | None) -> list[int] | None:
        if candidates is None:
            return None
        return sorted(self.taxonomy.by_id(class_id).index for class_id in self.resolve_candidates(candidates))

    def map(self, answer: str, top_k: int = 5, candidates: Sequence[str] | None = None) -> MappingResult:
        """Map one answer; `candidates` (class ids or names) restricts the allowed classes."""
        return self.map_batch([answer], top_k=top_k, candidates=candidates)[0]

    def map_batch(self, answers: Sequence[str], top_k: int = 5, candidates: Sequence[str] | None = None) -> list[MappingResult]:
        """Map many answers with at most one encoder call for all that need embeddings."""
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        allowed = self._candidate_indexes(candidates)
        allowed_set = set(allowed) if allowed is not None else None

        results: list[MappingResult | None] = [None] * len(answers)
        pending: list[tuple[int, ParsedAnswer, bool]] = []
        for position, answer in enumerate(answers):
            fast = self._match_plain_name(answer, allowed_set)
            if fast is not None:
                results[position] = fast
                continue
            parsed = parse_answer(answer)
            if parsed.abstain:
                results[position] = self._abstain_result(parsed)
                continue
            match = self._match_names(parsed)
            if match is None:
                pending.append((position, parsed, False))
                continue
            indexes, method = match
            if allowed_set is not None:
                inside = tuple(i for i in indexes if i in allowed_set)
                if not inside:
                    # The answer names a class, but not an allowed one.
                    pending.append((position, parsed, True))
                    continue
                indexes = inside
            results[position] = self._name_result(parsed, indexes, method)

        if pending:
            ranked_lists = self._search([parsed.normalized for _, parsed, _ in pending], max(top_k, 2), allowed)
            for (position, parsed, force_out), ranked in zip(pending, ranked_lists):
                results[position] = self._embedding_result(parsed, ranked, top_k, force_out)
        return [result for result in results if result is not None]

    def map_multilabel(self, answer: str, top_k: int = 5, candidates: Sequence[str] | None = None) -> list[MappingResult]:
        """Split a list answer into items and map each; one abstain result when no item remains.

        An answer that is itself a class name ("mortar and pestle") is not split.
        Items that abstain are dropped, and items repeating an earlier one are merged.
        """
        whole = parse_answer(answer)
        # The parser keeps only the first line, so the name test uses the whole text.
        if not whole.abstain and self._is_name(normalize_text(answer[:_PLAIN_NAME_MAX_CHARS])):
            return [self.map(answer, top_k=top_k, candidates=candidates)]

        items = list(dict.fromkeys(split_answers(answer, protected=self._protected)))
        mapped = [result for result in self.map_batch(items, top_k=top_k, candidates=candidates) if not result.abstain]
        if not mapped:
            return [self._abstain_result(whole)]
        return mapped

    def map_option(self, answer: str, options: Sequence[str]) -> MappingResult:
        """Map a multiple-choice answer to one of `options` (class ids in the order shown: A, B, ...).

        A letter ("B", "(B)", "Answer: B") selects that option; otherwise an
        answer equal to an option's name or synonym selects it. Anything else
        is out of list, with the options ranked by similarity for transparency.
        """
        if not options:
            raise ValueError("options must not be empty")
        option_indexes = [self.taxonomy.by_id(option).index for option in options]

        letter = parse_option_letter(answer, len(options))
        parsed = parse_answer(answer)
        if letter is not None:
            index = option_indexes[letter]
            return MappingResult(
                answer=answer, normalized=parsed.normalized, labels=[self._name_labels[index]], method="option", similarity=1.0
            )
        if parsed.abstain:
            return self._abstain_result(parsed)

        match = self._match_names(parsed)
        if match is not None:
            chosen = [i for i in match[0] if i in option_indexes]
            if chosen:
                return MappingResult(
                    answer=answer,
                    normalized=parsed.normalized,
                    labels=[self._name_labels[i] for i in chosen],
                    method="option",
                    similarity=1.0,
                    ambiguous=len(chosen) > 1,
                )
        ranked = self._search([parsed.normalized], len(option_indexes), sorted(set(option_indexes)))[0]
        return self._embedding_result(parsed, ranked, len(option_indexes), force_out_of_list=True)

    def nearest_classes(
        self, text: str, k: int, candidates: Sequence[str] | None = None, exclude: Sequence[str] = ()
    ) -> list[LabelScore]:
        """Return the k classes nearest to `text` by embedding, skipping the `exclude` ids."""
        if k < 1:
            return []
        excluded = {self.taxonomy.by_id(class_id).index for class_id in exclude}
        allowed = self._candidate_indexes(candidates)
        ranked = self._search([normalize_text(text) or text], k + len(excluded), allowed)[0]
        kept = [(i, score) for i, score in ranked if i not in excluded][:k]
        return [LabelScore(self.taxonomy.classes[i].id, i, self.taxonomy.classes[i].name, score) for i, score in kept]

    def distractors(
        self, class_id: str, k: int, method: str = "nearest", seed: int = 0, candidates: Sequence[str] | None = None
    ) -> list[str]:
        """Return k distractor class ids for `class_id` (see mapping.distractors for the methods)."""
        return choose_distractors(self.taxonomy, self.class_index, class_id, k, method, seed, self._candidate_indexes(candidates))

    def class_vectors(self, class_id: str) -> np.ndarray:
        """Return the embedded name vectors of one class, one row per name or template text."""
        return self.class_index.vectors[self.class_index.rows_of([self.taxonomy.by_id(class_id).index])]
