"""A hardened demo service shared by the hardening tests: small limits, an API key, fetch and faults on.

The service runs on 127.0.0.1 with HTTP and gRPC. Its limits are small so
that over-limit inputs stay cheap to build, and it requires an API key. It
allows `image_url` for the host name "localhost" only, which still resolves
to loopback and so must be rejected. It fails one model batch whenever the
test creates `fail_batch_file`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.launcher import ServiceProcess, free_port, start_service

API_KEY = "hardening-test-key-7f3a9c"

LIMITS = {
    "max_image_bytes": 2 * 1024 * 1024,
    "max_image_pixels": 4_000_000,
    "max_images_per_request": 4,
    "max_candidates": 10,
    "max_candidate_chars": 100,
    "max_top_k": 20,
    "max_concurrency": 64,
}


@dataclass
class HardenedService:
    process: ServiceProcess
    fail_batch_file: Path
    api_key: str = API_KEY

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def grpc_target(self) -> str:
        assert self.process.grpc_target is not None
        return self.process.grpc_target


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def demo_photos() -> dict[str, bytes]:
    """The bundled sample photos as PNG files, by name (cat, coffee, rocket, ...)."""
    from service.models.samples import sample_images

    return {name: png(image) for name, image in sample_images().items()}


@pytest.fixture(scope="session")
def hardened_service(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HardenedService]:
    home = tmp_path_factory.mktemp("hardened-service")
    fail_batch_file = home / "fail-next-batch"
    overrides = {
        "limits": LIMITS,
        "batching": {"max_batch_size": 8, "max_latency_ms": 60000},
        "fetch": {"enabled": True, "allowed_hosts": ["localhost"], "timeout_s": 5},
        "faults": {"fail_batch_file": str(fail_batch_file)},
    }
    env = {"MLLM_CLASSIFY_API_KEY": API_KEY, "BENTOML_HOME": str(home / "bentoml")}
    with start_service(
        str(models_dir / "demo-llava"),
        grpc_port=free_port(),
        env=env,
        config_overrides=overrides,
        log_dir=home,
    ) as process:
        yield HardenedService(process=process, fail_batch_file=fail_batch_file)
