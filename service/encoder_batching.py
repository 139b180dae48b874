"""Merge concurrent text-encoder calls into one batch.

The service maps each answer in its own worker thread, so under load many
threads each encode one short answer, one forward pass each. Profiled with
bench/profile_service.py on tiny-llava at 32 clients, that mapping took more
samples than the batched model itself. Here the first caller becomes the
leader and encodes the texts of every caller waiting at that moment in one
call, so a lone request waits for nothing and concurrent ones share a batch.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mapping.encoder import TextEncoder


@dataclass
class _Call:
    texts: Sequence[str]
    # Set when the result is ready, or when this caller is promoted to leader.
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    vectors: np.ndarray | None = None
    error: Exception | None = None


class CoalescingEncoder:
    """A TextEncoder wrapper whose `encode` batches the texts of concurrent callers."""

    def __init__(self, encoder: TextEncoder, max_texts: int = 256) -> None:
        self.encoder = encoder
        self.name = encoder.name
        self.dimension = encoder.dimension
        self.fingerprint = encoder.fingerprint
        self.max_texts = max_texts
        self._lock = threading.Lock()
        self._pending: list[_Call] = []
        self._leader_active = False

    def __repr__(self) -> str:
        return f"CoalescingEncoder({self.encoder!r})"

    def __getattr__(self, name: str) -> object:
        # Anything else (batch_size, helpers) comes from the wrapped encoder.
        return getattr(self.encoder, name)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode `texts` like TextEncoder.encode, in one batch with other threads' texts."""
        if len(texts) == 0 or len(texts) >= self.max_texts:
            return self.encoder.encode(texts)

        call = _Call(texts)
        with self._lock:
            self._pending.append(call)
            # Invariant: calls are pending only while a leader is active, so
            # a new leader's call is first in line and lands in its batch.
            if not self._leader_active:
                self._leader_active = True
                call.lead = True

        if not call.lead:
            call.wake.wait()
        if call.lead:
            self._lead()

        if call.error is not None:
            raise call.error
        assert call.vectors is not None
        return call.vectors

    def _lead(self) -> None:
        # Encode one batch, then hand the lead to the first caller still
        # waiting, so no thread keeps encoding for others after its own result.
        with self._lock:
            batch = self._take_batch()
        self._encode_batch(batch)
        with self._lock:
            if self._pending:
                successor = self._pending[0]
                successor.lead = True
                successor.wake.set()
            else:
                self._leader_active = False

    def _take_batch(self) -> list[_Call]:
        batch: list[_Call] = []
        count = 0
        while self._pending and (not batch or count + len(self._pending[0].texts) <= self.max_texts):
            call = self._pending.pop(0)
            batch.append(call)
            count += len(call.texts)
        return batch

    def _encode_batch(self, batch: list[_Call]) -> None:
        texts = [text for call in batch for text in call.texts]
        try:
            vectors = self.encoder.encode(texts)
        except Exception as error:  # handed to every caller, which re-raises it
            for call in batch:
                call.error = error
                call.lead = False
                call.wake.set()
            return

        start = 0
        for call in batch:
            call.vectors = vectors[start : start + len(call.texts)]
            start += len(call.texts)
            call.lead = False
            call.wake.set()
