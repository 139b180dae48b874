"""The `constrained` and `score` protocols: answers restricted to class names by the backend.

Both put no class list in the prompt. Their choice strings are the display
names and synonyms of the allowed classes, and `ChoiceSet` maps each string
back to the class ids it names. A string can name several classes (ImageNet
has two classes named "missile" and two with the synonym "crane"), and then
each of them gets the string's score and the outcome is marked ambiguous.

`constrained`: beam search restricted to the choice strings returns the top-k
distinct strings with their sequence log-probabilities (see
`service.backends.constrained`). A class's log-probability is the log of the
summed probabilities of its strings, and its label score is that probability,
exp(log-probability): the chance that the model answers with one of the
class's names.

`score`: each candidate class's strings are scored by length-normalized
log-likelihood (see `service.backends.scoring`), a class takes the best score
of its strings, and a softmax over the candidate classes gives probabilities
that sum to 1. Without candidates in the request the run is two-stage, like
`choice`: the model answers freely and the mapper's `num_options` nearest
classes to that answer become the candidates.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from mapping import Taxonomy

from service.backends.constrained import register_choice_set
from service.protocols import RUN_FACTORIES, prompts
from service.protocols.base import ModelAnswer, Outcome, PromptRequest
from service.protocols.runs import RunContext, _MappedRun
from service.schemas import Label


@dataclass(frozen=True)
class ChoiceSet:
    """Choice strings of some classes and the class ids each string names."""

    choices: tuple[str, ...]
    class_ids: dict[str, tuple[str, ...]]
    # Choices sent in a PromptRequest: the strings, or one registered reference.
    request_choices: tuple[str, ...]


def build_choice_set(taxonomy: Taxonomy, class_ids: Sequence[str] | None = None) -> ChoiceSet:
    """Collect the names and synonyms of `class_ids` (default: every class), in class order."""
    classes = taxonomy.classes if class_ids is None else [taxonomy.by_id(class_id) for class_id in class_ids]
    owners: dict[str, list[str]] = {}
    for entry in classes:
        for name in entry.all_names():
            text = name.strip()
            if text and entry.id not in owners.setdefault(text, []):
                owners[text].append(entry.id)
    choices = tuple(owners)
    return ChoiceSet(choices, {text: tuple(ids) for text, ids in owners.items()}, choices)


_taxonomy_sets: dict[str, ChoiceSet] = {}
_taxonomy_sets_lock = threading.Lock()


def taxonomy_choice_set(taxonomy: Taxonomy) -> ChoiceSet:
    """Return the choice set of a whole taxonomy, registered once so requests carry only its reference."""
    key = f"taxonomy:{taxonomy.name}:{taxonomy.hash[:16]}"
    with _taxonomy_sets_lock:
        cached = _taxonomy_sets.get(key)
        if cached is not None:
            return cached
        choice_set = build_choice_set(taxonomy)
        reference = register_choice_set(key, choice_set.choices)
        cached = ChoiceSet(choice_set.choices, choice_set.class_ids, (reference,))
        _taxonomy_sets[key] = cached
        return cached


def _label(taxonomy: Taxonomy, class_id: str, score: float) -> Label:
    entry = taxonomy.by_id(class_id)
    return Label(id=entry.id, index=entry.index, name=entry.name, score=round(score, 6))


def _log_sum_exp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(value - top) for value in values))


class ConstrainedRun(_MappedRun):
    """Beam search restricted to the class names of the taxonomy or of the candidates."""

    protocol = "constrained"
    prompt_id = prompts.CONSTRAINED.prompt_id

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        if context.candidate_ids is None:
            self.choice_set = taxonomy_choice_set(context.taxonomy)
        else:
            self.choice_set = build_choice_set(context.taxonomy, context.candidate_ids)

    def first_prompt(self) -> PromptRequest:
        return PromptRequest(
            prompts.CONSTRAINED.text,
            self.prompt_id,
            mode="constrained",
            choices=self.choice_set.request_choices,
            num_beams=self.context.params.top_k,
        )

    def on_answer(self, answer: ModelAnswer) -> Outcome:
        strings = [line for line in answer.text.split("\n") if line]
        log_probs = answer.choice_scores or []
        if not strings or len(strings) != len(log_probs):
            # Only possible when no beam finished on a complete name.
            return Outcome(labels=[], raw_answer=answer.text, method="constrained", margin=0.0, similarity=0.0,
                           out_of_list=False, abstain=True)

        per_class: dict[str, list[float]] = {}
        for text, log_prob in zip(strings, log_probs, strict=True):
            for class_id in self.choice_set.class_ids.get(text, ()):
                per_class.setdefault(class_id, []).append(log_prob)
        ranked = sorted(((class_id, _log_sum_exp(values)) for class_id, values in per_class.items()), key=lambda item: -item[1])

        top_k = self.context.params.top_k
        labels = [_label(self.context.taxonomy, class_id, math.exp(log_prob)) for class_id, log_prob in ranked[:top_k]]
        margin = labels[0].score if labels else 0.0
        if len(labels) > 1:
            margin -= labels[1].score
        return Outcome(
            labels=labels,
            raw_answer=strings[0],
            method="constrained",
            margin=margin,
            similarity=1.0,
            out_of_list=False,
            abstain=not labels,
            ambiguous=len(self.choice_set.class_ids.get(strings[0], ())) > 1,
        )


class ScoreRun(_MappedRun):
    """Likelihood of each candidate class's names as the answer, as probabilities over the candidates."""

    protocol = "score"
    prompt_id = prompts.SCORE.prompt_id

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.candidate_ids: list[str] | None = context.candidate_ids
        self.choice_set: ChoiceSet | None = None
        self.first_answer: str | None = None

    def first_prompt(self) -> PromptRequest:
        if self.candidate_ids is not None:
            return self._score_prompt()
        return PromptRequest(prompts.OPEN.text, prompts.OPEN.prompt_id)

    def _score_prompt(self) -> PromptRequest:
        self.choice_set = build_choice_set(self.context.taxonomy, self.candidate_ids)
        return PromptRequest(prompts.SCORE.text, self.prompt_id, mode="score", choices=self.choice_set.request_choices)

    def on_answer(self, answer: ModelAnswer) -> PromptRequest | Outcome:
        if self.choice_set is None:
            return self._after_open_answer(answer)
        return self._outcome_from_scores(answer)

    def _after_open_answer(self, answer: ModelAnswer) -> PromptRequest | Outcome:
        self.first_answer = answer.text
        nearest = self._nearest_to_open_answer(answer)
        if isinstance(nearest, Outcome):
            return nearest
        self.candidate_ids = nearest
        return self._score_prompt()

    def _outcome_from_scores(self, answer: ModelAnswer) -> Outcome:
        choice_set = self.choice_set
        assert choice_set is not None and self.candidate_ids is not None
        scores = answer.choice_scores or []
        if len(scores) != len(choice_set.choices):
            raise ValueError(f"the backend returned {len(scores)} scores for {len(choice_set.choices)} choices")

        # A class is as likely as the best-scoring of its names.
        best: dict[str, tuple[float, str]] = {}
        for text, score in zip(choice_set.choices, scores, strict=True):
            for class_id in choice_set.class_ids[text]:
                if class_id not in best or score > best[class_id][0]:
                    best[class_id] = (score, text)

        ordered = list(self.candidate_ids)
        top = max(best[class_id][0] for class_id in ordered)
        weights = [math.exp(best[class_id][0] - top) for class_id in ordered]
        total = sum(weights)
        probabilities = {class_id: weight / total for class_id, weight in zip(ordered, weights, strict=True)}

        ranked = sorted(ordered, key=lambda class_id: -probabilities[class_id])
        labels = [_label(self.context.taxonomy, class_id, probabilities[class_id]) for class_id in ranked[: self.context.params.top_k]]
        second = probabilities[ranked[1]] if len(ranked) > 1 else 0.0
        best_text = best[ranked[0]][1]
        return Outcome(
            labels=labels,
            raw_answer=best_text,
            method="score",
            margin=probabilities[ranked[0]] - second,
            similarity=1.0,
            out_of_list=False,
            abstain=False,
            # The winning name also names another candidate ("missile").
            ambiguous=len(ranked) > 1 and best[ranked[1]][1] == best_text,
            options=[_label(self.context.taxonomy, class_id, probabilities[class_id]) for class_id in ordered],
            first_answer=self.first_answer,
        )


RUN_FACTORIES["constrained"] = ConstrainedRun
RUN_FACTORIES["score"] = ScoreRun
