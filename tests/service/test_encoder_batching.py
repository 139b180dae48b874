"""CoalescingEncoder: concurrent callers share encoder batches and get their own rows."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mapping import load_encoder
from service.encoder_batching import CoalescingEncoder


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("all-MiniLM-L6-v2")


class CountingEncoder:
    """Wraps a real encoder and records the size of every call."""

    def __init__(self, encoder) -> None:
        self.inner = encoder
        self.name = encoder.name
        self.dimension = encoder.dimension
        self.fingerprint = encoder.fingerprint
        self.calls: list[int] = []

    def encode(self, texts):
        self.calls.append(len(texts))
        return self.inner.encode(texts)


def test_single_caller_matches_encoder(encoder) -> None:
    texts = ["tabby cat", "espresso"]

    vectors = CoalescingEncoder(encoder).encode(texts)

    np.testing.assert_allclose(vectors, encoder.encode(texts), atol=1e-5)


def test_concurrent_callers_get_own_rows(encoder) -> None:
    counting = CountingEncoder(encoder)
    coalescing = CoalescingEncoder(counting)
    texts = [f"a photo of object number {i}" for i in range(24)]
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(texts))

    def work(position: int) -> None:
        start.wait()
        results[position] = coalescing.encode([texts[position]])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    expected = encoder.encode(texts)
    assert sorted(results) == list(range(len(texts)))
    for position, vectors in results.items():
        np.testing.assert_allclose(vectors[0], expected[position], atol=1e-4)
    assert sum(counting.calls) == len(texts)
    assert len(counting.calls) < len(texts)


def test_error_reaches_every_caller(encoder) -> None:
    class FailingEncoder(CountingEncoder):
        def encode(self, texts):
            raise RuntimeError("encoder failed")

    coalescing = CoalescingEncoder(FailingEncoder(encoder))

    with pytest.raises(RuntimeError, match="encoder failed"):
        coalescing.encode(["tabby cat"])
    with pytest.raises(RuntimeError, match="encoder failed"):
        coalescing.encode(["espresso"])
