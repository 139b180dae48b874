"""The classification engine: backend, mappers and protocol runs, without BentoML.

The BentoML service wraps an Engine and drives its protocol runs through the
adaptive batcher. The evaluation harness and the benchmarks use the Engine
directly, in-process, with the synchronous `classify_batch`.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
import uuid
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from mapping import CachingEncoder, Mapper, Taxonomy, load_encoder, load_taxonomy
from service.backends import create_backend
from service.backends.base import Backend, BackendInfo, BatchTimings
from service.config import Config
from service.encoder_batching import CoalescingEncoder
from service.protocols import ModelAnswer, Outcome, ParameterError, ProtocolRun, PromptRequest, create_run
from service.protocols import prompts
from service.protocols.runs import RunContext
from service.schemas import ClassifyParams, ClassifyResult, StageTimings, TaxonomyInfo

logger = logging.getLogger(__name__)

# Prompt tokens reserved for the image when checking whether a closed-world
# class list fits the context. Models differ (LLaVA at 336 px: 576 tokens,
# SmolVLM: 64 per tile), so this is a conservative allowance, not a measurement.
IMAGE_TOKEN_ALLOWANCE = 1024

# A run asks at most this many prompts (the two-stage choice protocol asks two).
MAX_ROUNDS = 3


class Engine:
    """One loaded model plus one mapper per served taxonomy."""

    def __init__(self, config: Config, backend: Backend | None = None) -> None:
        self.config = config
        self.backend = backend or create_backend(config.model)

        started = time.perf_counter()
        self.backend.load()
        self.load_seconds = time.perf_counter() - started
        logger.info("loaded backend %s in %.2f s", self.backend.info().model_id, self.load_seconds)

        self._mappers: dict[str, Mapper] = {}
        # Shared by every mapper. Set its `on_lookup(hits, misses)` to count lookups.
        self.answer_cache: CachingEncoder
        self._closed_fits: dict[str, bool] = {}
        self._closed_lock = threading.Lock()
        self._load_mappers()

    # -- taxonomies -------------------------------------------------------

    def _load_mappers(self) -> None:
        mapping_config = self.config.mapping
        # Requests map their answers in separate threads. CoalescingEncoder
        # merges concurrent encoder calls into one batch (see
        # service/encoder_batching.py). The answer cache wraps it, so a
        # repeated answer returns without waiting for another thread's batch.
        encoder = CachingEncoder(CoalescingEncoder(load_encoder(mapping_config.encoder)), mapping_config.answer_cache_size)
        self.answer_cache = encoder
        cache_dir = Path(mapping_config.cache_dir).expanduser()

        names = [mapping_config.taxonomy, *mapping_config.extra_taxonomies]
        for name in dict.fromkeys(names):
            started = time.perf_counter()
            taxonomy = load_taxonomy(name)
            self._mappers[self._served_name(name, taxonomy)] = Mapper(
                taxonomy,
                encoder,
                index_kind=mapping_config.index,
                cache_dir=cache_dir,
                out_of_list_threshold=mapping_config.out_of_list_threshold,
            )
            logger.info("taxonomy %s ready: %d classes in %.2f s", taxonomy.name, len(taxonomy), time.perf_counter() - started)

    @staticmethod
    def _served_name(requested: str, taxonomy: Taxonomy) -> str:
        # Built-in names are served under that name; files under the taxonomy's own name.
        return taxonomy.name or Path(requested).stem

    @property
    def default_taxonomy(self) -> str:
        return next(iter(self._mappers))

    def taxonomy_names(self) -> list[str]:
        return list(self._mappers)

    def mapper(self, taxonomy: str | None = None) -> Mapper:
        """Return the mapper of a served taxonomy, or raise ParameterError."""
        name = taxonomy or self.default_taxonomy
        try:
            return self._mappers[name]
        except KeyError:
            served = ", ".join(self._mappers)
            raise ParameterError("taxonomy", f"unknown taxonomy {name!r}; served taxonomies: {served}") from None

    def info(self) -> BackendInfo:
        return self.backend.info()

    def taxonomy_infos(self) -> list[TaxonomyInfo]:
        return [
            TaxonomyInfo(
                name=name,
                num_classes=len(mapper.taxonomy),
                hash=mapper.taxonomy.hash,
                default=name == self.default_taxonomy,
                fits_closed_prompt=self.closed_prompt_fits(name),
            )
            for name, mapper in self._mappers.items()
        ]

    def closed_prompt_fits(self, taxonomy_name: str) -> bool:
        """Return whether every class name of the taxonomy fits a closed prompt."""
        with self._closed_lock:
            if taxonomy_name not in self._closed_fits:
                self._closed_fits[taxonomy_name] = self._measure_closed_fit(taxonomy_name)
            return self._closed_fits[taxonomy_name]

    def _measure_closed_fit(self, taxonomy_name: str) -> bool:
        context_tokens = self.info().max_context_tokens
        if context_tokens is None:
            return True
        names = [entry.name for entry in self._mappers[taxonomy_name].taxonomy.classes]
        prompt = prompts.CLOSED.render(classes=prompts.format_class_list(names))
        needed = self.backend.count_tokens(prompt) + IMAGE_TOKEN_ALLOWANCE + self.config.model.max_new_tokens
        return needed <= context_tokens

    # -- request preparation ----------------------------------------------

    def prepare(self, params: ClassifyParams) -> RunContext:
        """Check a request's parameters against the limits and the taxonomy; raise ParameterError."""
        limits = self.config.limits
        mapper = self.mapper(params.taxonomy)
        taxonomy_name = params.taxonomy or self.default_taxonomy

        if params.top_k > limits.max_top_k:
            raise ParameterError("top_k", f"top_k is {params.top_k}, above the maximum of {limits.max_top_k}")

        candidate_ids = None
        if params.candidates is not None:
            candidate_ids = self._check_candidates(params.candidates, mapper)

        if params.protocol == "choice" and candidate_ids is not None:
            if len(candidate_ids) < 2:
                raise ParameterError("candidates", "the choice protocol needs at least 2 candidates")
            if len(candidate_ids) > len(prompts.OPTION_LETTERS):
                raise ParameterError(
                    "candidates",
                    f"the choice protocol shows at most {len(prompts.OPTION_LETTERS)} options, got {len(candidate_ids)} candidates",
                )

        closed_fits = True
        if params.protocol == "closed" and candidate_ids is None:
            closed_fits = self.closed_prompt_fits(taxonomy_name)
            if not closed_fits:
                raise ParameterError(
                    "candidates",
                    f"the {len(mapper.taxonomy)} class names of taxonomy {taxonomy_name!r} do not fit the model's "
                    f"context of {self.info().max_context_tokens} tokens in a closed prompt; pass candidates",
                )

        context = RunContext(
            mapper=mapper,
            taxonomy=mapper.taxonomy,
            taxonomy_name=taxonomy_name,
            params=params,
            candidate_ids=candidate_ids,
            closed_fits=closed_fits,
        )
        return context

    def _check_candidates(self, candidates: Sequence[str], mapper: Mapper) -> list[str]:
        limits = self.config.limits
        if len(candidates) == 0:
            raise ParameterError("candidates", "candidates is an empty list; omit it or list at least one class")
        if len(candidates) > limits.max_candidates:
            raise ParameterError("candidates", f"{len(candidates)} candidates, above the limit of {limits.max_candidates}")

        seen: dict[str, str] = {}
        for item in candidates:
            if not isinstance(item, str) or not item.strip():
                raise ParameterError("candidates", "candidates contains an empty string")
            if len(item) > limits.max_candidate_chars:
                raise ParameterError(
                    "candidates", f"a candidate is {len(item)} characters, above the limit of {limits.max_candidate_chars}"
                )
            if any(unicodedata.category(char).startswith("C") for char in item):
                raise ParameterError("candidates", f"candidate {item[:40]!r} contains non-printable characters")
            key = " ".join(item.casefold().split())
            if key in seen:
                raise ParameterError("candidates", f"candidate {item!r} is listed twice")
            seen[key] = item

        # Resolve item by item: a name shared by several classes ("crane")
        # adds all of them, but two items naming the same class are an error.
        resolved: dict[str, str] = {}
        for item in candidates:
            try:
                class_ids = mapper.resolve_candidates([item])
            except ValueError as error:
                raise ParameterError("candidates", str(error)) from error
            for class_id in class_ids:
                if class_id in resolved:
                    raise ParameterError(
                        "candidates", f"candidates {resolved[class_id]!r} and {item!r} name the same class {class_id}"
                    )
                resolved[class_id] = item
        return list(resolved)

    def create_run(self, params: ClassifyParams) -> ProtocolRun:
        return create_run(self.prepare(params))

    # -- model calls -------------------------------------------------------

    def prepare_image(self, image: Image.Image) -> Image.Image:
        """Do the backend's per-image work (such as resizing to the input size) before the image joins a batch."""
        return self.backend.prepare_image(image)

    def answer(
        self,
        images: Sequence[Image.Image],
        requests: Sequence[PromptRequest],
        max_new_tokens: Sequence[int | None],
    ) -> tuple[list[ModelAnswer], BatchTimings]:
        """Answer one prompt per image in as few backend calls as the prompts allow."""
        answers: list[ModelAnswer | None] = [None] * len(requests)
        total = BatchTimings()

        # Free generation is batched per max_new_tokens; other modes go to the
        # backend's own batched methods.
        groups: dict[tuple[str, int | None], list[int]] = {}
        for position, request in enumerate(requests):
            groups.setdefault((request.mode, max_new_tokens[position]), []).append(position)

        for (mode, tokens), positions in groups.items():
            group_images = [images[i] for i in positions]
            group_requests = [requests[i] for i in positions]
            if mode == "generate":
                generations, timings = self.backend.generate(group_images, [r.text for r in group_requests], tokens)
                group_answers = [
                    ModelAnswer(
                        text=generation.text,
                        prompt_tokens=generation.prompt_tokens,
                        generated_tokens=generation.generated_tokens,
                        class_scores=generation.class_scores,
                    )
                    for generation in generations
                ]
            else:
                group_answers, timings = self._answer_restricted(mode, group_images, group_requests, tokens)

            for position, model_answer in zip(positions, group_answers, strict=True):
                answers[position] = model_answer
            total.preprocess_s += timings.preprocess_s
            total.generate_s += timings.generate_s

        return [answer for answer in answers if answer is not None], total

    def _answer_restricted(
        self,
        mode: str,
        images: Sequence[Image.Image],
        requests: Sequence[PromptRequest],
        max_new_tokens: int | None,
    ) -> tuple[list[ModelAnswer], BatchTimings]:
        method = getattr(self.backend, "constrained_generate" if mode == "constrained" else "score_choices", None)
        if method is None:
            raise ParameterError("protocol", f"the {self.info().backend} backend does not support {mode} mode")
        return method(images, requests, max_new_tokens)

    # -- in-process driver ------------------------------------------------

    def classify_batch(
        self,
        images: Sequence[Image.Image],
        params: Sequence[ClassifyParams],
        request_ids: Sequence[str] | None = None,
    ) -> list[ClassifyResult]:
        """Classify images in-process: every round of prompts is one batched backend call."""
        if len(images) != len(params):
            raise ValueError(f"got {len(images)} images but {len(params)} parameter sets")
        request_ids = list(request_ids) if request_ids is not None else [uuid.uuid4().hex for _ in images]

        started = time.perf_counter()
        images = [self.prepare_image(image) for image in images]
        runs = [self.create_run(item) for item in params]
        pending: dict[int, PromptRequest] = {i: run.first_prompt() for i, run in enumerate(runs)}
        outcomes: dict[int, Outcome] = {}
        timings = [StageTimings() for _ in runs]
        tokens = [[0, 0] for _ in runs]

        for _ in range(MAX_ROUNDS):
            if not pending:
                break
            positions = list(pending)
            answers, batch_timings = self.answer(
                [images[i] for i in positions],
                [pending[i] for i in positions],
                [params[i].max_new_tokens or self.config.model.max_new_tokens for i in positions],
            )
            pending = {}
            for position, model_answer in zip(positions, answers, strict=True):
                timings[position].preprocess_ms += batch_timings.preprocess_s * 1000
                timings[position].generate_ms += batch_timings.generate_s * 1000
                tokens[position][0] += model_answer.prompt_tokens
                tokens[position][1] += model_answer.generated_tokens
                step = runs[position].on_answer(model_answer)
                if isinstance(step, Outcome):
                    outcomes[position] = step
                else:
                    pending[position] = step

        if pending:
            raise RuntimeError(f"protocol runs did not finish within {MAX_ROUNDS} prompts")

        total_ms = (time.perf_counter() - started) * 1000
        results = []
        for position, run in enumerate(runs):
            timing = timings[position]
            timing.map_ms = run.stats.map_s * 1000
            timing.total_ms = total_ms
            results.append(
                self.build_result(run, outcomes[position], request_ids[position], timing, *tokens[position])
            )
        return results

    def build_result(
        self,
        run: ProtocolRun,
        outcome: Outcome,
        request_id: str,
        timings: StageTimings,
        prompt_tokens: int,
        generated_tokens: int,
    ) -> ClassifyResult:
        """Attach ids, model and timings to a finished run's outcome."""
        context: RunContext = run.context  # type: ignore[attr-defined]
        return ClassifyResult(
            request_id=request_id,
            labels=outcome.labels,
            raw_answer=outcome.raw_answer,
            method=outcome.method,
            margin=round(outcome.margin, 6),
            similarity=round(outcome.similarity, 6),
            out_of_list=outcome.out_of_list,
            abstain=outcome.abstain,
            ambiguous=outcome.ambiguous,
            protocol=context.params.protocol,
            prompt_id=run.prompt_id,
            model=self.info().model_id,
            taxonomy=context.taxonomy_name,
            timings=timings,
            options=outcome.options,
            first_answer=outcome.first_answer,
            objects=outcome.objects,
            prompt_tokens=prompt_tokens,
            generated_tokens=generated_tokens,
        )
