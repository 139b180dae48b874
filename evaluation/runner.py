"""Run a model over a dataset through a grid of settings, writing one result row per image and setting.

Settings that ask the model the same thing (they differ only in how answers
are mapped) share one model call per image: the runner classifies once and
writes a row for each of them, re-mapping the raw answer offline where the
setting asks for exact or embedding mapping.

Memory stays bounded: images are read one batch at a time, rows go straight
to the JSONL store, and only sample metadata and the set of finished
(setting, image) pairs are kept. Rerunning with the same output file skips
the pairs already written, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from tqdm import tqdm

from evaluation.datasets import Dataset, DatasetError, Sample, load_image
from evaluation.grid import Setting
from evaluation.remap import Remapper
from evaluation.store import ResultRow, ResultStore
from evaluation.transports import Transport
from service.schemas import ClassifyParams, ClassifyResult

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """Counts of one runner call."""

    written: int = 0
    skipped: int = 0
    errors: int = 0
    dropped: int = 0


def _stable_seed(*parts: object) -> int:
    # Python's hash() is salted per process; a digest keeps shuffles reproducible across runs.
    digest = hashlib.sha256("|".join(str(part) for part in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def run_order(dataset: Dataset, setting: Setting) -> list[int]:
    """Return the sample indices in the order the setting runs them."""
    order = list(range(len(dataset)))
    if setting.order_seed is not None:
        random.Random(setting.order_seed).shuffle(order)
    return order


def primary_label(sample: Sample) -> str | None:
    """Return the class the choice and closed options are built around."""
    return sample.label or (sample.labels[0] if sample.labels else None)


class Runner:
    """Drives a transport through settings, with a progress bar and resumable output."""

    def __init__(
        self,
        transport: Transport,
        remapper: Remapper,
        store: ResultStore,
        taxonomy_name: str | None = None,
        progress: bool = True,
    ) -> None:
        self.transport = transport
        self.remapper = remapper
        self.store = store
        self.taxonomy_name = taxonomy_name
        self.progress = progress
        self.model = transport.model_name()

    # -- parameters per image ----------------------------------------------

    def candidates_for(self, setting: Setting, sample: Sample) -> list[str] | None:
        """Return the class ids shown to the model for this image, or None for the service default."""
        truth = primary_label(sample)
        if truth is None:
            return None
        mapper = self.remapper.default_mapper
        rng = random.Random(_stable_seed(setting.seed, sample.id))

        if setting.protocol == "choice" and setting.distractors != "service":
            # Other correct labels of a multilabel image are not distractors.
            excluded = set(sample.labels) | {truth}
            needed = setting.num_options - 1
            pool = mapper.distractors(
                truth, needed + len(excluded), method=setting.distractors, seed=_stable_seed(setting.seed, sample.id) % 2**31
            )
            distractors = [class_id for class_id in pool if class_id not in excluded][:needed]
            options = [truth, *distractors]
            rng.shuffle(options)
            return options

        if setting.protocol == "closed" and setting.closed_candidates is not None:
            name = mapper.taxonomy.by_id(truth).name
            nearest = mapper.nearest_classes(name, setting.closed_candidates - 1, exclude=[truth])
            options = [truth, *(label.id for label in nearest)]
            rng.shuffle(options)
            return options
        return None

    def params_for(self, setting: Setting, candidates: list[str] | None) -> ClassifyParams:
        return ClassifyParams(
            protocol=setting.protocol,
            taxonomy=self.taxonomy_name,
            candidates=candidates,
            top_k=setting.top_k,
            seed=setting.seed,
            num_options=setting.num_options,
            max_new_tokens=setting.max_new_tokens,
        )

    # -- rows ----------------------------------------------------------------

    def _row(
        self,
        setting: Setting,
        sample: Sample,
        result: ClassifyResult | Exception,
        candidates: list[str] | None,
        batch_ms: float,
        batch_size: int,
        order_index: int,
    ) -> ResultRow:
        base = {
            "setting": setting.key,
            "image_id": sample.id,
            "model": self.model,
            "labels": list(sample.labels),
            "label": sample.label,
            "batch_ms": round(batch_ms, 3),
            "batch_size": batch_size,
            "order_index": order_index,
        }
        if isinstance(result, Exception):
            return ResultRow(**base, status="error", error=f"{type(result).__name__}: {result}")

        mapped, objects = self.remapper.map_result(setting, result, candidates)
        options = [label.id for label in result.options] if result.options else candidates
        return ResultRow(
            **base,
            raw_answer=result.raw_answer,
            prediction=mapped.prediction,
            predictions=mapped.predictions,
            prediction_name=mapped.prediction_name,
            method=mapped.method,
            similarity=round(mapped.similarity, 6),
            margin=round(mapped.margin, 6),
            out_of_list=mapped.out_of_list,
            abstain=mapped.abstain,
            ambiguous=mapped.ambiguous,
            objects=objects,
            options=options,
            timings={name: round(value, 3) for name, value in result.timings.model_dump().items()},
        )

    # -- driver --------------------------------------------------------------

    def run(self, dataset: Dataset, settings: Sequence[Setting]) -> RunSummary:
        """Run every setting over the dataset; return counts of rows written and skipped."""
        groups: dict[str, list[Setting]] = {}
        for setting in settings:
            groups.setdefault(setting.generation_key(), []).append(setting)

        total = len(dataset) * len(settings)
        already = sum(1 for setting in settings for sample in dataset if self.store.is_done(setting.key, sample.id, self.model))
        summary = RunSummary(skipped=already)
        with tqdm(total=total, initial=already, unit="row", disable=not self.progress, desc=dataset.name) as bar:
            for members in groups.values():
                self._run_group(dataset, members, summary, bar)
        return summary

    def _run_group(self, dataset: Dataset, members: list[Setting], summary: RunSummary, bar: tqdm) -> None:
        lead = members[0]
        todo = [
            (position, dataset[index])
            for position, index in enumerate(run_order(dataset, lead))
            if any(not self.store.is_done(setting.key, dataset[index].id, self.model) for setting in members)
        ]

        # Images without any label are never sent to the model, so they do not take batch slots.
        dropped = [(position, sample) for position, sample in todo if not sample.labels and sample.label is None]
        dropped_rows = [row for position, sample in dropped for row in self._dropped_rows(members, sample, position)]
        self._write(dropped_rows, summary, bar)
        runnable = [(position, sample) for position, sample in todo if sample.labels or sample.label is not None]

        for start in range(0, len(runnable), lead.batch_size):
            rows: list[ResultRow] = []
            work: list[tuple[int, Sample, list[str] | None]] = []
            images = []
            for position, sample in runnable[start : start + lead.batch_size]:
                try:
                    image = load_image(sample)
                except DatasetError as error:
                    logger.warning("%s", error)
                    rows.extend(self._row(setting, sample, error, None, 0.0, 0, position) for setting in members)
                    continue
                work.append((position, sample, self.candidates_for(lead, sample)))
                images.append(image)

            if work:
                params = [self.params_for(lead, candidates) for _, _, candidates in work]
                results, batch_ms = self.transport.classify(images, params)
                for (position, sample, candidates), result in zip(work, results, strict=True):
                    for setting in members:
                        rows.append(self._row(setting, sample, result, candidates, batch_ms, len(work), position))
            self._write(rows, summary, bar)

    def _write(self, rows: list[ResultRow], summary: RunSummary, bar: tqdm) -> None:
        # A member setting may already be done for an image that another member still needed.
        rows = [row for row in rows if not self.store.is_done(row.setting, row.image_id, row.model)]
        self.store.append(rows)
        summary.written += len(rows)
        summary.errors += sum(row.status == "error" for row in rows)
        summary.dropped += sum(row.status == "dropped" for row in rows)
        bar.update(len(rows))

    def _dropped_rows(self, members: list[Setting], sample: Sample, position: int) -> list[ResultRow]:
        # Images with no valid label are not sent to the model but still get a
        # row, so the report can count them.
        return [
            ResultRow(
                setting=setting.key,
                image_id=sample.id,
                model=self.model,
                labels=[],
                label=None,
                status="dropped",
                order_index=position,
            )
            for setting in members
        ]
