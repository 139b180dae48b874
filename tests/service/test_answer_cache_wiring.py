"""The answer cache inside the Engine, its config key and its Prometheus counter."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from prometheus_client import REGISTRY

from mapping import CachingEncoder
from service import metrics
from service.backends.base import Backend, BackendInfo, BatchTimings, Generation
from service.config import ConfigError, load_config
from service.encoder_batching import CoalescingEncoder
from service.engine import Engine
from service.schemas import ClassifyParams

# The ImageNet-1k index the mapping tests cache, so the Engine loads it instead of building it.
SHARED_CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "mapping-tests"
ANSWER = "a cup of coffee on a saucer"


class FixedAnswerBackend(Backend):
    """Answers every prompt with the same text, so the second request repeats the first answer."""

    def load(self) -> None:
        pass

    def generate(self, images, prompts, max_new_tokens=None):
        return [Generation(ANSWER, prompt_tokens=10, generated_tokens=6) for _ in prompts], BatchTimings()

    def info(self) -> BackendInfo:
        return BackendInfo(backend="fixed", model_id="fixed-answer")


def build_engine(answer_cache_size: int) -> Engine:
    config = load_config(
        environ={
            "MLLM_CLASSIFY_MAPPING__CACHE_DIR": str(SHARED_CACHE_DIR),
            "MLLM_CLASSIFY_MAPPING__ANSWER_CACHE_SIZE": str(answer_cache_size),
        }
    )
    return Engine(config, backend=FixedAnswerBackend())


@pytest.fixture(scope="module")
def engine() -> Engine:
    return build_engine(4096)


def classify_open(engine: Engine) -> str:
    image = Image.new("RGB", (32, 32))
    result = engine.classify_batch([image], [ClassifyParams(protocol="open")])[0]
    return result.labels[0].id


def test_config_answer_cache_default() -> None:
    assert load_config(environ={}).mapping.answer_cache_size == 4096


def test_config_rejects_negative_cache_size() -> None:
    with pytest.raises(ConfigError, match="answer_cache_size"):
        load_config(environ={"MLLM_CLASSIFY_MAPPING__ANSWER_CACHE_SIZE": "-1"})


def test_engine_cache_wraps_coalescing_encoder(engine: Engine) -> None:
    assert isinstance(engine.answer_cache, CachingEncoder)
    assert isinstance(engine.answer_cache.encoder, CoalescingEncoder)
    assert engine.answer_cache.max_entries == 4096
    assert engine.mapper().encoder is engine.answer_cache


def test_engine_repeated_answer_hits_cache(engine: Engine) -> None:
    lookups: list[tuple[int, int]] = []
    engine.answer_cache.on_lookup = lambda hits, misses: lookups.append((hits, misses))
    try:
        first = classify_open(engine)
        second = classify_open(engine)
    finally:
        engine.answer_cache.on_lookup = None

    assert first == second
    assert lookups[-1] == (1, 0)
    assert engine.answer_cache.hits >= 1


def test_engine_cache_size_zero_disables_cache() -> None:
    engine = build_engine(0)

    classify_open(engine)
    classify_open(engine)

    assert engine.answer_cache.max_entries == 0
    assert len(engine.answer_cache) == 0
    assert engine.answer_cache.hits == 0


def sample(model: str, result: str) -> float | None:
    return REGISTRY.get_sample_value("mllm_classify_answer_cache_requests_total", {"model": model, "result": result})


def test_initialize_series_exports_cache_counter() -> None:
    metrics.initialize_series("cache-init-model", ["imagenet-1k"], ("open",))

    assert sample("cache-init-model", "hit") == 0.0
    assert sample("cache-init-model", "miss") == 0.0


def test_answer_cache_recorder_counts() -> None:
    record = metrics.answer_cache_recorder("cache-count-model")

    record(3, 1)
    record(0, 2)

    assert sample("cache-count-model", "hit") == 3.0
    assert sample("cache-count-model", "miss") == 3.0
