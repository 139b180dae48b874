"""Fixtures of the decoding tests: the project tokenizer, backends of the offline models, photos."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tokenizer(models_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(models_dir / "tiny-llava"))


@pytest.fixture(scope="session")
def imagenet():
    from mapping import load_taxonomy

    return load_taxonomy("imagenet-1k")


@pytest.fixture(scope="session")
def photos():
    from service.models.samples import sample_images

    return sample_images()


def load_backend(path: Path):
    from service.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(str(path))
    backend.load()
    return backend
