"""An LRU cache of answer embeddings in front of a text encoder.

MLLM answers repeat: the same image and prompt give the same greedy answer,
and a classifier's answers come from a small vocabulary ("tabby cat", "a cup
of coffee"). `Mapper.map("a cup of coffee on a saucer")` on ImageNet-1k took
a median 14.8 ms with the cache cold and 0.3 ms warm (200 runs each,
all-MiniLM-L6-v2, torch on one thread of an AMD EPYC VM). The encoder is
deterministic, so a cached vector is the vector the encoder returned for
that text. A fresh encode of the same text in a different batch differs from
it only by padding noise (about 1e-7 for MiniLM), the same noise that merging
concurrent callers into one batch already adds.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from mapping.encoder import TextEncoder

# Calls with more texts than this are bulk work, such as embedding the class
# names of a taxonomy index. They bypass the cache, so they neither evict the
# answers in it nor fill it with names that answers rarely repeat verbatim.
DEFAULT_MAX_LOOKUP_TEXTS = 64
# Texts longer than this are encoded but not stored. Long answers rarely
# repeat verbatim, and the limit bounds the memory held by the keys.
DEFAULT_MAX_TEXT_CHARS = 512

LookupCallback = Callable[[int, int], None]


class CachingEncoder:
    """A TextEncoder wrapper that keeps the vectors of recent texts in an LRU cache.

    Thread-safe: the lock covers only the cache, never the wrapped encoder, so
    a hit never waits for another thread's encode. Two threads that miss the
    same text at the same time both encode it. `on_lookup(hits, misses)`, if
    set, receives the counts of each `encode` call that consults the cache,
    so neither bulk calls nor a disabled cache report any.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        max_entries: int,
        *,
        max_lookup_texts: int = DEFAULT_MAX_LOOKUP_TEXTS,
        max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
        on_lookup: LookupCallback | None = None,
    ) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be 0 (cache disabled) or more, got {max_entries}")
        self.encoder = encoder
        self.name = encoder.name
        self.dimension = encoder.dimension
        self.fingerprint = encoder.fingerprint
        self.max_entries = max_entries
        self.max_lookup_texts = max_lookup_texts
        self.max_text_chars = max_text_chars
        self.on_lookup = on_lookup
        # Lookups so far: one per text of each call that used the cache.
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        # Read-only rows, least recently used first.
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()

    def __repr__(self) -> str:
        return f"CachingEncoder({self.encoder!r}, max_entries={self.max_entries})"

    def __getattr__(self, name: str) -> object:
        # Anything else (batch_size, helpers) comes from the wrapped encoder.
        # `encoder` itself is missing only while the object is half built, for
        # example during unpickling, and must not recurse.
        if name == "encoder":
            raise AttributeError(name)
        return getattr(self.encoder, name)

    def __len__(self) -> int:
        """Return the number of cached texts."""
        with self._lock:
            return len(self._vectors)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode `texts` like TextEncoder.encode, taking repeated texts from the cache.

        Returns a new (n, dimension) float32 array that the caller may modify.
        Only the texts not in the cache reach the wrapped encoder, each once,
        in a single call. An error of that call propagates, and nothing from
        the call is stored.
        """
        if self.max_entries == 0 or len(texts) == 0 or len(texts) > self.max_lookup_texts:
            return self.encoder.encode(texts)

        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for position, text in enumerate(texts):
                cached = self._vectors.get(text)
                if cached is None:
                    missing.setdefault(text, []).append(position)
                    continue
                self._vectors.move_to_end(text)
                vectors[position] = cached
            hits = len(texts) - sum(len(positions) for positions in missing.values())
            misses = len(texts) - hits
            self.hits += hits
            self.misses += misses
        if self.on_lookup is not None:
            self.on_lookup(hits, misses)
        if not missing:
            return vectors

        unique = list(missing)
        encoded = self.encoder.encode(unique)
        for text, row in zip(unique, encoded):
            vectors[missing[text]] = row
        self._store(unique, encoded)
        return vectors

    def _store(self, texts: list[str], encoded: np.ndarray) -> None:
        rows = []
        for text, row in zip(texts, encoded):
            if len(text) > self.max_text_chars:
                continue
            # A private read-only copy: the caller's array and the wrapped
            # encoder's output can change without touching the cache.
            stored = np.array(row, dtype=np.float32)
            stored.flags.writeable = False
            rows.append((text, stored))

        with self._lock:
            for text, stored in rows:
                if text in self._vectors:
                    # Another thread stored this text meanwhile, from the same encoder.
                    self._vectors.move_to_end(text)
                    continue
                self._vectors[text] = stored
                if len(self._vectors) > self.max_entries:
                    self._vectors.popitem(last=False)
