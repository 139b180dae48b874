"""Fixtures for the load-test tests: a demo-model service on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def demo_service(models_dir: Path) -> Iterator[object]:
    """Run the service with the demo model for the tests of one module."""
    from service.launcher import free_port, start_service

    with start_service(model_id=str(models_dir / "demo-llava"), http_port=free_port()) as service:
        yield service
