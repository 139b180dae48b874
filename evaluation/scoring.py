"""Scores computed purely from result rows, so they can be redone without the model.

Every figure is reported side by side with the practice it is compared to:
- single-label top-1 (prediction equals the original label) against multilabel
  accuracy (prediction is in the label set; images with no valid label are
  dropped and counted);
- out-of-list answers counted as wrong against the biased practice of
  discarding them, with the out-of-list rate;
- multiple choice with random against hard (nearest-class, confusion-list) distractors;
- exact string mapping against embedding mapping, and one encoder against another;
- batch sizes and image orders of the same setting: accuracy change and the
  share of images that get the same prediction.

An answer "out of list" is any row without a top-1 class: the mapper found no
class close enough, or the model abstained.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from evaluation.grid import Setting
from evaluation.store import ResultRow


class Accuracy(BaseModel):
    """A proportion with its count and a 95% Wilson interval."""

    correct: int
    total: int
    value: float | None
    low: float | None
    high: float | None


def accuracy(correct: int, total: int, z: float = 1.96) -> Accuracy:
    """Return correct/total with a Wilson score interval (None when total is 0)."""
    if total == 0:
        return Accuracy(correct=0, total=0, value=None, low=None, high=None)
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return Accuracy(correct=correct, total=total, value=p, low=max(0.0, centre - half), high=min(1.0, centre + half))


class SettingScore(BaseModel):
    """All figures of one setting."""

    setting: str
    protocol: str
    rows: int
    errors: int
    # Images without a valid label, left out of the multilabel figures.
    dropped: int
    single_label: Accuracy
    multilabel: Accuracy
    # Multilabel accuracy when out-of-list answers are discarded instead of counted wrong.
    multilabel_discard_out_of_list: Accuracy
    single_label_discard_out_of_list: Accuracy
    out_of_list_rate: float | None
    abstain_rate: float | None
    # multilabel protocol: share of images where any listed object is a correct class.
    any_object_correct: Accuracy | None = None
    mean_latency_ms: float | None = None
    images_per_second: float | None = None
    batch_size: int | None = None


class ComparisonRow(BaseModel):
    setting: str
    variant: str
    multilabel: float | None
    single_label: float | None
    delta_vs_first: float | None
    out_of_list_rate: float | None = None


class Comparison(BaseModel):
    """Settings that differ in one respect, first row as the reference."""

    title: str
    reference: str
    rows: list[ComparisonRow]


class ReplicateRow(BaseModel):
    setting: str
    batch_size: int
    order_seed: int | None
    multilabel: float | None
    delta_vs_reference: float | None
    # Share of images with the same top-1 prediction as the reference run.
    agreement_with_reference: float | None
    mean_latency_ms: float | None
    images_per_second: float | None


class ReplicateGroup(BaseModel):
    """Runs of one setting that differ only in batch size or image order."""

    group: str
    reference: str
    rows: list[ReplicateRow]
    mean_pairwise_agreement: float | None
    accuracy_range: float | None


class Scores(BaseModel):
    settings: list[SettingScore]
    comparisons: list[Comparison]
    replicates: list[ReplicateGroup]


@dataclass
class _Tally:
    rows: int = 0
    errors: int = 0
    dropped: int = 0
    single_total: int = 0
    single_correct: int = 0
    single_in_list_total: int = 0
    single_in_list_correct: int = 0
    multi_total: int = 0
    multi_correct: int = 0
    multi_in_list_total: int = 0
    out_of_list: int = 0
    abstain: int = 0
    objects_total: int = 0
    objects_correct: int = 0
    latency_ms: float = 0.0
    latency_rows: int = 0
    batch_share_ms: float = 0.0
    batch_sizes: set[int] = field(default_factory=set)
    predictions: dict[str, str | None] = field(default_factory=dict)

    def add(self, row: ResultRow) -> None:
        self.rows += 1
        if row.status == "error":
            self.errors += 1
            return
        if row.status == "dropped" or not row.labels:
            self.dropped += 1
        in_list = row.prediction is not None

        if row.status == "ok":
            self.predictions[row.image_id] = row.prediction
            self.batch_sizes.add(row.batch_size)
            if "total_ms" in row.timings:
                self.latency_ms += row.timings["total_ms"]
                self.latency_rows += 1
            self.batch_share_ms += row.batch_ms / max(row.batch_size, 1)

        if row.label is not None and row.status == "ok":
            self.single_total += 1
            self.single_correct += row.prediction == row.label
            if in_list:
                self.single_in_list_total += 1
                self.single_in_list_correct += row.prediction == row.label

        if not row.labels or row.status != "ok":
            return
        self.multi_total += 1
        correct = row.prediction is not None and row.prediction in row.labels
        self.multi_correct += correct
        if in_list:
            self.multi_in_list_total += 1
        else:
            self.out_of_list += 1
        self.abstain += row.abstain
        if row.objects is not None:
            self.objects_total += 1
            self.objects_correct += any(item in row.labels for item in row.objects if item is not None)

    def score(self, setting_key: str, setting: Setting | None) -> SettingScore:
        multi_in_list_correct = self.multi_correct  # every correct prediction is in the list
        rate = (lambda count: count / self.multi_total) if self.multi_total else (lambda count: None)
        return SettingScore(
            setting=setting_key,
            protocol=setting.protocol if setting else setting_key.split(",")[0].removeprefix("protocol="),
            rows=self.rows,
            errors=self.errors,
            dropped=self.dropped,
            single_label=accuracy(self.single_correct, self.single_total),
            multilabel=accuracy(self.multi_correct, self.multi_total),
            multilabel_discard_out_of_list=accuracy(multi_in_list_correct, self.multi_in_list_total),
            single_label_discard_out_of_list=accuracy(self.single_in_list_correct, self.single_in_list_total),
            out_of_list_rate=rate(self.out_of_list),
            abstain_rate=rate(self.abstain),
            any_object_correct=accuracy(self.objects_correct, self.objects_total) if self.objects_total else None,
            mean_latency_ms=self.latency_ms / self.latency_rows if self.latency_rows else None,
            images_per_second=(len(self.predictions) / (self.batch_share_ms / 1000)) if self.batch_share_ms > 0 else None,
            batch_size=next(iter(self.batch_sizes)) if len(self.batch_sizes) == 1 else None,
        )


def _parse_setting(key: str) -> Setting | None:
    """Rebuild a Setting from its key; None for keys this version cannot read."""
    fields: dict[str, object] = {}
    for part in key.split(","):
        name, _, raw = part.partition("=")
        if name not in Setting.model_fields:
            return None
        fields[name] = None if raw == "None" else (int(raw) if raw.lstrip("-").isdigit() else raw)
    try:
        return Setting(**fields)
    except ValueError:
        return None


def score_rows(rows: Iterable[ResultRow], settings: Sequence[Setting] | None = None) -> Scores:
    """Score result rows, streaming; `settings` orders the output (default: order of first appearance)."""
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    for row in rows:
        tallies[row.setting].add(row)

    known = {setting.key: setting for setting in settings or []}
    order = [setting.key for setting in settings or [] if setting.key in tallies]
    order += [key for key in tallies if key not in known]
    parsed = {key: known.get(key) or _parse_setting(key) for key in order}

    setting_scores = [tallies[key].score(key, parsed[key]) for key in order]
    by_key = {score.setting: score for score in setting_scores}
    return Scores(
        settings=setting_scores,
        comparisons=_comparisons(order, parsed, by_key),
        replicates=_replicates(order, parsed, by_key, tallies),
    )


# -- side-by-side comparisons ----------------------------------------------------


def _comparison(title: str, keys: list[str], variants: list[str], by_key: dict[str, SettingScore]) -> Comparison:
    reference = by_key[keys[0]].multilabel.value
    rows = []
    for key, variant in zip(keys, variants, strict=True):
        score = by_key[key]
        value = score.multilabel.value
        rows.append(
            ComparisonRow(
                setting=key,
                variant=variant,
                multilabel=value,
                single_label=score.single_label.value,
                delta_vs_first=(value - reference) if value is not None and reference is not None else None,
                out_of_list_rate=score.out_of_list_rate,
            )
        )
    return Comparison(title=title, reference=keys[0], rows=rows)


def _comparisons(
    order: list[str], parsed: dict[str, Setting | None], by_key: dict[str, SettingScore]
) -> list[Comparison]:
    comparisons = []
    settings = {key: setting for key, setting in parsed.items() if setting is not None}

    # Choice with different distractors, everything else equal.
    distractor_order = {"random": 0, "service": 1, "nearest": 2, "confusion": 3}
    groups: dict[str, list[str]] = defaultdict(list)
    for key in order:
        setting = settings.get(key)
        if setting is not None and setting.protocol == "choice":
            groups[Setting(**setting.model_dump(exclude={"distractors"})).key].append(key)
    for keys in groups.values():
        if len(keys) > 1:
            keys.sort(key=lambda key: distractor_order[settings[key].distractors])
            variants = [settings[key].distractors for key in keys]
            comparisons.append(_comparison("Multiple choice: random vs hard distractors", keys, variants, by_key))

    # Same model answers, mapped differently (service, exact, embedding per encoder).
    mapping_order = {"exact": 0, "service": 1, "embedding": 2}
    groups = defaultdict(list)
    for key in order:
        setting = settings.get(key)
        if setting is not None:
            groups[setting.generation_key()].append(key)
    for keys in groups.values():
        if len(keys) > 1:
            keys.sort(key=lambda key: (mapping_order[settings[key].mapping], settings[key].encoder or ""))
            variants = [
                settings[key].mapping + (f" ({settings[key].encoder})" if settings[key].encoder else "") for key in keys
            ]
            comparisons.append(_comparison("Answer mapping: exact match vs embedding, by encoder", keys, variants, by_key))

    # Protocols at the base of the grid.
    protocol_keys = [
        key
        for key in order
        if (setting := settings.get(key)) is not None
        and setting == Setting(**{**_base_fields(settings, order), "protocol": setting.protocol})
    ]
    if len(protocol_keys) > 1:
        comparisons.append(
            _comparison("Protocols", protocol_keys, [settings[key].protocol for key in protocol_keys], by_key)
        )
    return comparisons


def _base_fields(settings: dict[str, Setting], order: list[str]) -> dict[str, object]:
    # The first setting of a grid is its base; protocols are compared at the base's other fields.
    first = settings.get(order[0]) if order else None
    return first.model_dump(exclude={"protocol"}) if first is not None else {}


def _agreement(first: dict[str, str | None], second: dict[str, str | None]) -> float | None:
    shared = first.keys() & second.keys()
    if not shared:
        return None
    return sum(first[image] == second[image] for image in shared) / len(shared)


def _replicates(
    order: list[str],
    parsed: dict[str, Setting | None],
    by_key: dict[str, SettingScore],
    tallies: dict[str, _Tally],
) -> list[ReplicateGroup]:
    groups: dict[str, list[str]] = defaultdict(list)
    for key in order:
        setting = parsed.get(key)
        if setting is not None:
            groups[setting.replicate_key()].append(key)

    result = []
    for group, keys in groups.items():
        if len(keys) < 2:
            continue
        reference = keys[0]
        reference_value = by_key[reference].multilabel.value
        rows = []
        for key in keys:
            setting = parsed[key]
            assert setting is not None
            value = by_key[key].multilabel.value
            rows.append(
                ReplicateRow(
                    setting=key,
                    batch_size=setting.batch_size,
                    order_seed=setting.order_seed,
                    multilabel=value,
                    delta_vs_reference=(value - reference_value)
                    if value is not None and reference_value is not None
                    else None,
                    agreement_with_reference=_agreement(tallies[reference].predictions, tallies[key].predictions),
                    mean_latency_ms=by_key[key].mean_latency_ms,
                    images_per_second=by_key[key].images_per_second,
                )
            )
        pairs = [
            _agreement(tallies[a].predictions, tallies[b].predictions) for a, b in itertools.combinations(keys, 2)
        ]
        pairs = [value for value in pairs if value is not None]
        values = [row.multilabel for row in rows if row.multilabel is not None]
        result.append(
            ReplicateGroup(
                group=group,
                reference=reference,
                rows=rows,
                mean_pairwise_agreement=sum(pairs) / len(pairs) if pairs else None,
                accuracy_range=(max(values) - min(values)) if values else None,
            )
        )
    return result
