"""The classification protocols: open, closed, choice and multilabel.

Each class is one image's run: it renders its prompt(s) and maps the answer
with `mapping.Mapper`. Constrained decoding and likelihood scoring live in
`service.protocols.decoding_runs` because they need backend support.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from mapping import LabelScore, Mapper, MappingResult, Taxonomy

from service.protocols import prompts
from service.protocols.base import ModelAnswer, Outcome, ProtocolRun, PromptRequest, RunStats
from service.schemas import ClassifyParams, Label, ObjectResult


@dataclass
class RunContext:
    """What a run needs besides its parameters: the mapper and resolved settings."""

    mapper: Mapper
    taxonomy: Taxonomy
    taxonomy_name: str
    params: ClassifyParams
    # Candidate class ids resolved from params.candidates, or None.
    candidate_ids: list[str] | None
    # Whether the full class list fits the model context in a closed prompt.
    closed_fits: bool


def to_label(score: LabelScore) -> Label:
    return Label(id=score.id, index=score.index, name=score.name, score=round(float(score.score), 6))


def outcome_from_mapping(result: MappingResult, raw_answer: str) -> Outcome:
    return Outcome(
        labels=[to_label(label) for label in result.labels],
        raw_answer=raw_answer,
        method=result.method,
        margin=float(result.margin),
        similarity=float(result.similarity),
        out_of_list=bool(result.out_of_list),
        abstain=bool(result.abstain),
        ambiguous=bool(result.ambiguous),
    )


class _MappedRun(ProtocolRun):
    """Shared timing of mapper calls."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self.stats = RunStats()

    def _timed(self, function, *args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            self.stats.map_s += time.perf_counter() - started

    def _nearest_to_open_answer(self, answer: ModelAnswer) -> Outcome | list[str]:
        """Return the num_options classes nearest to a first free answer, or the abstain outcome.

        The first stage of the two-stage protocols: a refusal stays a refusal,
        so there is nothing to choose among or to score.
        """
        mapper = self.context.mapper
        num_options = self.context.params.num_options

        first = self._timed(mapper.map, answer.text, top_k=num_options)
        if first.abstain:
            outcome = outcome_from_mapping(first, answer.text)
            outcome.first_answer = answer.text
            return outcome

        nearest = self._timed(mapper.nearest_classes, answer.text, num_options)
        return [label.id for label in nearest]


class OpenRun(_MappedRun):
    protocol = "open"
    prompt_id = prompts.OPEN.prompt_id

    def first_prompt(self) -> PromptRequest:
        return PromptRequest(prompts.OPEN.text, self.prompt_id)

    def on_answer(self, answer: ModelAnswer) -> Outcome:
        params = self.context.params
        if answer.class_scores is not None:
            return self._outcome_from_class_scores(answer)
        result = self._timed(self.context.mapper.map, answer.text, top_k=params.top_k, candidates=self.context.candidate_ids)
        return outcome_from_mapping(result, answer.text)

    def _outcome_from_class_scores(self, answer: ModelAnswer) -> Outcome:
        """Rank classes by a supervised head's probabilities; no text mapping needed."""
        allowed = set(self.context.candidate_ids) if self.context.candidate_ids is not None else None
        ranked = sorted(
            ((class_id, score) for class_id, score in (answer.class_scores or {}).items() if allowed is None or class_id in allowed),
            key=lambda item: -item[1],
        )
        labels = []
        for class_id, score in ranked[: self.context.params.top_k]:
            entry = self.context.taxonomy.by_id(class_id)
            labels.append(Label(id=entry.id, index=entry.index, name=entry.name, score=round(float(score), 6)))
        margin = labels[0].score - labels[1].score if len(labels) > 1 else (labels[0].score if labels else 0.0)
        return Outcome(
            labels=labels,
            raw_answer=answer.text,
            method="supervised",
            margin=margin,
            similarity=1.0 if labels else 0.0,
            out_of_list=not labels,
            abstain=False,
        )


class ClosedRun(_MappedRun):
    """Closed world: the class names are in the prompt, the answer is mapped within them."""

    protocol = "closed"
    prompt_id = prompts.CLOSED.prompt_id

    def first_prompt(self) -> PromptRequest:
        context = self.context
        if context.candidate_ids is not None:
            names = [context.taxonomy.by_id(class_id).name for class_id in context.candidate_ids]
        else:
            names = [entry.name for entry in context.taxonomy.classes]
        text = prompts.CLOSED.render(classes=prompts.format_class_list(names))
        return PromptRequest(text, self.prompt_id)

    def on_answer(self, answer: ModelAnswer) -> Outcome:
        params = self.context.params
        result = self._timed(self.context.mapper.map, answer.text, top_k=params.top_k, candidates=self.context.candidate_ids)
        return outcome_from_mapping(result, answer.text)


class ChoiceRun(_MappedRun):
    """Multiple choice.

    With candidates, they are the options. Without, the run is two-stage: the
    model answers freely, the mapper's nearest classes to that answer become
    the options (hard distractors, not random ones), and the model chooses.
    Option order is shuffled with the request seed, so it is reproducible.
    """

    protocol = "choice"
    prompt_id = prompts.CHOICE.prompt_id

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.options: list[str] | None = None
        self.first_answer: str | None = None

    def first_prompt(self) -> PromptRequest:
        candidate_ids = self.context.candidate_ids
        if candidate_ids is not None:
            self.options = self._shuffled(candidate_ids)
            return self._choice_prompt()
        return PromptRequest(prompts.OPEN.text, prompts.OPEN.prompt_id)

    def on_answer(self, answer: ModelAnswer) -> PromptRequest | Outcome:
        if self.options is None:
            return self._after_open_answer(answer)

        result = self._timed(self.context.mapper.map_option, answer.text, self.options)
        outcome = outcome_from_mapping(result, answer.text)
        outcome.options = [self._option_label(class_id) for class_id in self.options]
        outcome.first_answer = self.first_answer
        return outcome

    def _after_open_answer(self, answer: ModelAnswer) -> PromptRequest | Outcome:
        self.first_answer = answer.text
        nearest = self._nearest_to_open_answer(answer)
        if isinstance(nearest, Outcome):
            return nearest
        self.options = self._shuffled(nearest)
        return self._choice_prompt()

    def _choice_prompt(self) -> PromptRequest:
        names = [self.context.taxonomy.by_id(class_id).name for class_id in self.options or []]
        return PromptRequest(prompts.CHOICE.render(options=prompts.format_options(names)), self.prompt_id)

    def _shuffled(self, class_ids: Sequence[str]) -> list[str]:
        options = list(class_ids)
        random.Random(self.context.params.seed).shuffle(options)
        return options

    def _option_label(self, class_id: str) -> Label:
        entry = self.context.taxonomy.by_id(class_id)
        return Label(id=entry.id, index=entry.index, name=entry.name, score=0.0)


class MultilabelRun(_MappedRun):
    """Multilabel: the model lists objects, each mapped on its own."""

    protocol = "multilabel"
    prompt_id = prompts.MULTILABEL.prompt_id

    def first_prompt(self) -> PromptRequest:
        return PromptRequest(prompts.MULTILABEL.text, self.prompt_id)

    def on_answer(self, answer: ModelAnswer) -> Outcome:
        params = self.context.params
        results = self._timed(
            self.context.mapper.map_multilabel, answer.text, top_k=params.top_k, candidates=self.context.candidate_ids
        )
        objects = [
            ObjectResult(
                answer=result.answer,
                labels=[to_label(label) for label in result.labels],
                method=result.method,
                margin=float(result.margin),
                out_of_list=bool(result.out_of_list),
            )
            for result in results
        ]

        # The image's labels are the top class of every mapped object, best first,
        # each class once.
        best: dict[str, Label] = {}
        for result in results:
            if result.abstain or result.out_of_list or not result.labels:
                continue
            top = to_label(result.labels[0])
            if top.id not in best or best[top.id].score < top.score:
                best[top.id] = top
        labels = sorted(best.values(), key=lambda label: -label.score)[: params.top_k]

        mapped = [result for result in results if not result.abstain]
        return Outcome(
            labels=labels,
            raw_answer=answer.text,
            method=mapped[0].method if mapped else "none",
            margin=float(mapped[0].margin) if mapped else 0.0,
            similarity=max((float(result.similarity) for result in mapped), default=0.0),
            out_of_list=bool(mapped) and not labels,
            abstain=not mapped,
            ambiguous=any(result.ambiguous for result in mapped),
            objects=objects,
        )
