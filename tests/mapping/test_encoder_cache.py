"""CachingEncoder: repeated texts skip the wrapped encoder and get the same vectors."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest

from mapping import CachingEncoder, Mapper, TextEncoder
from mapping_test_helpers import SHARED_CACHE_DIR

DIMENSION = 8


class FakeEncoder:
    """Returns a fixed unit vector per text, derived from its hash, and records every call."""

    name = "fake-encoder"
    dimension = DIMENSION
    fingerprint = "fake-fingerprint"
    batch_size = 16

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self._lock = threading.Lock()

    def encode(self, texts):
        with self._lock:
            self.calls.append(list(texts))
        return np.stack([vector_of(text) for text in texts]) if texts else np.zeros((0, DIMENSION), dtype=np.float32)


class FailingEncoder(FakeEncoder):
    def encode(self, texts):
        super().encode(texts)
        raise RuntimeError("encoder failed")


def vector_of(text: str) -> np.ndarray:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    vector = np.frombuffer(digest[: DIMENSION * 4], dtype=np.uint32).astype(np.float32) - 2**31
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def expected(texts: list[str]) -> np.ndarray:
    return np.stack([vector_of(text) for text in texts])


def test_cached_vectors_equal_uncached() -> None:
    texts = ["tabby cat", "a cup of coffee", "tabby cat"]
    cache = CachingEncoder(FakeEncoder(), 16)

    first = cache.encode(texts)
    second = cache.encode(texts)

    np.testing.assert_array_equal(first, expected(texts))
    np.testing.assert_array_equal(second, expected(texts))
    assert second.dtype == np.float32
    assert second.shape == (3, DIMENSION)


def test_encodes_only_unique_misses() -> None:
    fake = FakeEncoder()
    cache = CachingEncoder(fake, 16)

    cache.encode(["a", "b", "a"])
    cache.encode(["b", "c", "c", "a"])
    cache.encode(["c", "b"])

    assert fake.calls == [["a", "b"], ["c"]]


def test_hit_and_miss_counts() -> None:
    lookups: list[tuple[int, int]] = []
    cache = CachingEncoder(FakeEncoder(), 16, on_lookup=lambda hits, misses: lookups.append((hits, misses)))

    cache.encode(["a", "b", "a"])
    cache.encode(["b", "c"])

    assert lookups == [(0, 3), (1, 1)]
    assert cache.hits == 1
    assert cache.misses == 4
    assert len(cache) == 3


def test_lru_evicts_least_recently_used() -> None:
    fake = FakeEncoder()
    cache = CachingEncoder(fake, 2)

    cache.encode(["a"])
    cache.encode(["b"])
    cache.encode(["a"])  # a is now more recent than b
    cache.encode(["c"])  # evicts b
    fake.calls.clear()
    cache.encode(["a"])
    cache.encode(["c"])
    cache.encode(["b"])

    assert fake.calls == [["b"]]
    assert len(cache) == 2


def test_misses_beyond_capacity_still_returned() -> None:
    texts = ["a", "b", "c", "d"]
    cache = CachingEncoder(FakeEncoder(), 2)

    vectors = cache.encode(texts)

    np.testing.assert_array_equal(vectors, expected(texts))
    assert len(cache) == 2


def test_bulk_call_bypasses_cache() -> None:
    fake = FakeEncoder()
    cache = CachingEncoder(fake, 16, max_lookup_texts=4)
    cache.encode(["a"])
    bulk = ["a", "b", "c", "d", "e"]

    vectors = cache.encode(bulk)

    np.testing.assert_array_equal(vectors, expected(bulk))
    assert fake.calls[-1] == bulk
    assert len(cache) == 1
    assert (cache.hits, cache.misses) == (0, 1)


def test_bulk_call_keeps_cached_entries() -> None:
    fake = FakeEncoder()
    cache = CachingEncoder(fake, 2, max_lookup_texts=4)
    cache.encode(["a", "b"])

    cache.encode([f"class {i}" for i in range(100)])
    fake.calls.clear()
    cache.encode(["a", "b"])

    assert fake.calls == []


def test_long_text_not_stored() -> None:
    fake = FakeEncoder()
    cache = CachingEncoder(fake, 16, max_text_chars=10)
    long_text = "a very long answer text"

    first = cache.encode([long_text, "short"])
    second = cache.encode([long_text, "short"])

    np.testing.assert_array_equal(first, second)
    assert fake.calls == [[long_text, "short"], [long_text]]
    assert len(cache) == 1


def test_disabled_cache_passes_through() -> None:
    fake = FakeEncoder()
    lookups: list[tuple[int, int]] = []
    cache = CachingEncoder(fake, 0, on_lookup=lambda hits, misses: lookups.append((hits, misses)))

    cache.encode(["a", "a"])
    cache.encode(["a"])

    assert fake.calls == [["a", "a"], ["a"]]
    assert len(cache) == 0
    assert lookups == []


def test_empty_call_returns_empty_array() -> None:
    vectors = CachingEncoder(FakeEncoder(), 16).encode([])

    assert vectors.shape == (0, DIMENSION)


def test_negative_size_rejected() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        CachingEncoder(FakeEncoder(), -1)


def test_forwards_encoder_attributes() -> None:
    fake = FakeEncoder()
    cache = CachingEncoder(fake, 16)

    assert cache.name == fake.name
    assert cache.dimension == fake.dimension
    assert cache.fingerprint == fake.fingerprint
    assert cache.batch_size == fake.batch_size
    with pytest.raises(AttributeError):
        cache.no_such_attribute  # noqa: B018


def test_returned_array_mutation_keeps_cache() -> None:
    cache = CachingEncoder(FakeEncoder(), 16)
    first = cache.encode(["a", "b"])
    first[:] = 0.0

    second = cache.encode(["a", "b"])
    second[0, 0] = 42.0
    third = cache.encode(["a", "b"])

    np.testing.assert_array_equal(third, expected(["a", "b"]))


def test_wrapped_encoder_output_mutation_keeps_cache() -> None:
    class ReusingEncoder(FakeEncoder):
        """Returns the same buffer every call, as an encoder with a preallocated output could."""

        def __init__(self) -> None:
            super().__init__()
            self.buffer = np.zeros((1, DIMENSION), dtype=np.float32)

        def encode(self, texts):
            self.buffer[:] = super().encode(texts)
            return self.buffer

    reusing = ReusingEncoder()
    cache = CachingEncoder(reusing, 16)
    cache.encode(["a"])
    reusing.buffer[:] = 0.0

    vectors = cache.encode(["a"])

    np.testing.assert_array_equal(vectors, expected(["a"]))


def test_error_propagates_and_caches_nothing() -> None:
    cache = CachingEncoder(FailingEncoder(), 16)

    with pytest.raises(RuntimeError, match="encoder failed"):
        cache.encode(["a"])
    assert len(cache) == 0

    cache.encoder = FakeEncoder()
    cache.encode(["a"])
    assert cache.encoder.calls == [["a"]]


def test_concurrent_callers_get_correct_vectors() -> None:
    fake = FakeEncoder()
    # Fewer entries than words, so evictions run while other threads read.
    cache = CachingEncoder(fake, 8)
    vocabulary = [f"answer {i}" for i in range(12)]
    wrong: list[tuple[str, str]] = []
    lookups: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        start.wait()
        try:
            for _ in range(200):
                texts = [vocabulary[i] for i in rng.integers(0, len(vocabulary), size=int(rng.integers(1, 4)))]
                vectors = cache.encode(texts)
                lookups.append(len(texts))
                for text, vector in zip(texts, vectors):
                    if not np.array_equal(vector, vector_of(text)):
                        wrong.append((f"thread {seed}", text))
                vectors[:] = 0.0
        except BaseException as error:  # handed to the main thread's assert
            errors.append(error)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert wrong == []
    assert len(cache) <= 8
    assert cache.hits > 0
    assert cache.hits + cache.misses == sum(lookups)
    # A call encodes each missing text once, however often it repeats in the call.
    assert cache.misses >= sum(len(call) for call in fake.calls)


def test_real_encoder_cached_vectors_identical(encoder: TextEncoder) -> None:
    cache = CachingEncoder(encoder, 16)
    texts = ["a cup of coffee on a saucer", "tabby cat"]

    first = cache.encode(texts)
    second = cache.encode(texts)

    np.testing.assert_array_equal(second, first)
    np.testing.assert_allclose(second, encoder.encode(texts), atol=1e-6)
    assert cache.hits == 2


def test_mapper_results_unchanged_by_cache(mapper_1k: Mapper, encoder: TextEncoder) -> None:
    cached_mapper = Mapper(
        mapper_1k.taxonomy,
        CachingEncoder(encoder, 16),
        cache_dir=SHARED_CACHE_DIR,
        out_of_list_threshold=mapper_1k.out_of_list_threshold,
    )
    answers = ["a cup of coffee on a saucer", "a small striped cat", "astronaut"]

    for answer in answers:
        cold = cached_mapper.map(answer)
        warm = cached_mapper.map(answer)
        plain = mapper_1k.map(answer)
        assert warm == cold, answer
        assert [label.id for label in warm.labels] == [label.id for label in plain.labels], answer
        assert warm.similarity == pytest.approx(plain.similarity, abs=1e-5), answer
