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
from collections.abc import Callable, Iterable, Sequence
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
    """All figures of one model under one setting."""

    setting: str
    model: str = ""
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

    def score(self, setting_key: str, setting: Setting | None, model: str = "") -> SettingScore:
        multi_in_list_correct = self.multi_correct  # every correct prediction is in the list
        rate = (lambda count: count / self.multi_total) if self.multi_total else (lambda count: None)
        return SettingScore(
            setting=setting_key,
            model=model,
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
        if raw == "None":
            fields[name] = None
        elif raw.lstrip("-").isdigit():
            fields[name] = int(raw)
        else:
            fields[name] = raw
    try:
        return Setting(**fields)
    except ValueError:
        return None


@dataclass(frozen=True)
class _Key:
    """A scored unit: one model under one setting, with the name shown in tables."""

    model: str
    setting_key: str
    display: str
    setting: Setting | None


def score_rows(rows: Iterable[ResultRow], settings: Sequence[Setting] | None = None) -> Scores:
    """Score result rows, streaming; `settings` orders the output (default: order of first appearance).

    Rows of several models (the `model` field) are scored side by side; their
    settings are then shown as "model | setting".
    """
    tallies: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    for row in rows:
        tallies[(row.model, row.setting)].add(row)

    known = {setting.key: setting for setting in settings or []}
    rank = {key: position for position, key in enumerate(known)}
    pairs = sorted(tallies, key=lambda pair: rank.get(pair[1], len(rank)))
    several_models = len({model for model, _ in tallies}) > 1

    keys = []
    for model, setting_key in pairs:
        display = f"{model} | {setting_key}" if several_models else setting_key
        keys.append(_Key(model, setting_key, display, known.get(setting_key) or _parse_setting(setting_key)))

    setting_scores = [tallies[(key.model, key.setting_key)].score(key.display, key.setting, key.model) for key in keys]
    by_display = {score.setting: score for score in setting_scores}
    predictions = {key.display: tallies[(key.model, key.setting_key)].predictions for key in keys}
    comparisons = _comparisons(keys, by_display)
    if several_models:
        comparisons += _model_comparisons(keys, by_display)
    return Scores(settings=setting_scores, comparisons=comparisons, replicates=_replicates(keys, by_display, predictions))


# -- side-by-side comparisons ----------------------------------------------------


def _comparison(title: str, keys: list[_Key], variants: list[str], by_display: dict[str, SettingScore]) -> Comparison:
    reference = by_display[keys[0].display].multilabel.value
    rows = []
    for key, variant in zip(keys, variants, strict=True):
        score = by_display[key.display]
        value = score.multilabel.value
        rows.append(
            ComparisonRow(
                setting=key.display,
                variant=variant,
                multilabel=value,
                single_label=score.single_label.value,
                delta_vs_first=(value - reference) if value is not None and reference is not None else None,
                out_of_list_rate=score.out_of_list_rate,
            )
        )
    return Comparison(title=title, reference=keys[0].display, rows=rows)


def _grouped(keys: list[_Key], group_of: Callable[[_Key], str | None]) -> list[list[_Key]]:
    # Groups never mix models; keys whose setting could not be parsed are left out.
    groups: dict[tuple[str, str], list[_Key]] = defaultdict(list)
    for key in keys:
        if key.setting is None:
            continue
        group = group_of(key)
        if group is not None:
            groups[(key.model, group)].append(key)
    return [members for members in groups.values() if len(members) > 1]


def _comparisons(keys: list[_Key], by_display: dict[str, SettingScore]) -> list[Comparison]:
    comparisons = []

    # Choice with different distractors, everything else equal.
    distractor_order = {"random": 0, "service": 1, "nearest": 2, "confusion": 3}

    def without_distractors(key: _Key) -> str | None:
        if key.setting.protocol != "choice":
            return None
        return Setting(**key.setting.model_dump(exclude={"distractors"})).key

    for members in _grouped(keys, without_distractors):
        members.sort(key=lambda key: distractor_order[key.setting.distractors])
        variants = [key.setting.distractors for key in members]
        comparisons.append(_comparison("Multiple choice: random vs hard distractors", members, variants, by_display))

    # The same model answers, mapped differently (service, exact, embedding per encoder).
    mapping_order = {"exact": 0, "service": 1, "embedding": 2}
    for members in _grouped(keys, lambda key: key.setting.generation_key()):
        members.sort(key=lambda key: (mapping_order[key.setting.mapping], key.setting.encoder or ""))
        variants = [key.setting.mapping + (f" ({key.setting.encoder})" if key.setting.encoder else "") for key in members]
        comparisons.append(_comparison("Answer mapping: exact match vs embedding, by encoder", members, variants, by_display))

    # Protocols at each model's base setting: the first setting it ran.
    bases: dict[str, Setting] = {}
    for key in keys:
        if key.setting is not None:
            bases.setdefault(key.model, key.setting)

    # Fields that only exist to configure one protocol do not disqualify a setting.
    protocol_fields = {"protocol", "distractors", "closed_candidates", "num_options"}

    def at_base_except_protocol(key: _Key) -> str | None:
        shared = bases[key.model].model_dump(exclude=protocol_fields)
        return "base" if key.setting.model_dump(exclude=protocol_fields) == shared else None

    for members in _grouped(keys, at_base_except_protocol):
        if len({key.setting.protocol for key in members}) > 1:
            variants = [key.setting.label() for key in members]
            comparisons.append(_comparison("Protocols at the base setting", members, variants, by_display))
    return comparisons


def _model_comparisons(keys: list[_Key], by_display: dict[str, SettingScore]) -> list[Comparison]:
    """Compare models at the first setting they share, e.g. an MLLM against the supervised baseline.

    The settings table lists every other shared setting for each model.
    """
    groups: dict[str, list[_Key]] = defaultdict(list)
    for key in keys:
        groups[key.setting_key].append(key)
    for setting_key, members in groups.items():
        if len(members) > 1:
            return [_comparison(f"Models at {setting_key}", members, [key.model for key in members], by_display)]
    return []


def _agreement(first: dict[str, str | None], second: dict[str, str | None]) -> float | None:
    shared = first.keys() & second.keys()
    if not shared:
        return None
    return sum(first[image] == second[image] for image in shared) / len(shared)


def _replicates(
    keys: list[_Key], by_display: dict[str, SettingScore], predictions: dict[str, dict[str, str | None]]
) -> list[ReplicateGroup]:
    result = []
    for members in _grouped(keys, lambda key: key.setting.replicate_key()):
        reference = members[0].display
        reference_value = by_display[reference].multilabel.value
        rows = []
        for key in members:
            value = by_display[key.display].multilabel.value
            rows.append(
                ReplicateRow(
                    setting=key.display,
                    batch_size=key.setting.batch_size,
                    order_seed=key.setting.order_seed,
                    multilabel=value,
                    delta_vs_reference=(value - reference_value)
                    if value is not None and reference_value is not None
                    else None,
                    agreement_with_reference=_agreement(predictions[reference], predictions[key.display]),
                    mean_latency_ms=by_display[key.display].mean_latency_ms,
                    images_per_second=by_display[key.display].images_per_second,
                )
            )
        pair_values = [
            _agreement(predictions[first.display], predictions[second.display])
            for first, second in itertools.combinations(members, 2)
        ]
        pair_values = [value for value in pair_values if value is not None]
        values = [row.multilabel for row in rows if row.multilabel is not None]
        group_name = members[0].setting.replicate_key()
        result.append(
            ReplicateGroup(
                group=f"{members[0].model} | {group_name}" if members[0].display != members[0].setting_key else group_name,
                reference=reference,
                rows=rows,
                mean_pairwise_agreement=sum(pair_values) / len(pair_values) if pair_values else None,
                accuracy_range=(max(values) - min(values)) if values else None,
            )
        )
    return result
