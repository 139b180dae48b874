"""Fixtures of the gRPC tests: the demo model and the sample photos as PNG files."""

from __future__ import annotations

from pathlib import Path

import pytest

from grpc_support import png_bytes


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    """The bundled sample photos as PNG files, by name (cat, coffee, rocket, ...)."""
    from service.models.samples import sample_images

    return {name: png_bytes(image) for name, image in sample_images().items()}


@pytest.fixture(scope="session")
def demo_model(models_dir: Path) -> str:
    return str(models_dir / "demo-llava")
