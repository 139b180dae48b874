"""Both protocols through the real BentoML service on loopback, and their `protocol` metric label."""

from __future__ import annotations

import io

import pytest

from service.client import HttpClient
from service.grpc.client import GrpcClient
from service.launcher import free_port, start_service
from service.schemas import ClassifyParams

pytestmark = pytest.mark.slow

TABBY, ESPRESSO = "n02123045", "n07920052"


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def service(models_dir):
    overrides = {"batching": {"max_batch_size": 4}}
    with start_service(str(models_dir / "demo-llava"), grpc_port=free_port(), config_overrides=overrides) as process:
        yield process


@pytest.fixture(scope="module")
def client(service):
    with HttpClient(service.url) as http_client:
        yield http_client


@pytest.fixture(scope="module")
def grpc_client(service):
    with GrpcClient(service.grpc_target) as client:
        client.wait_for_serving(timeout_s=60.0)
        yield client


def test_constrained_over_http(client, photos):
    result = client.classify(_png(photos["cat"]), ClassifyParams(protocol="constrained", top_k=2))

    assert result.labels[0].id == TABBY
    assert result.method == "constrained"
    assert result.raw_answer == "tabby cat"


def test_constrained_batch_over_http(client, photos):
    images = [_png(photos["coffee"]), _png(photos["cat"])]

    results = client.classify_batch(images, ClassifyParams(protocol="constrained", candidates=["espresso", "tabby cat", "crane"]))

    assert [result.labels[0].id for result in results] == [ESPRESSO, TABBY]


def test_score_over_http(client, photos):
    params = ClassifyParams(protocol="score", candidates=["espresso", "coffee mug", "tabby cat", "cup"], top_k=4)

    result = client.classify(_png(photos["coffee"]), params)

    assert result.labels[0].id == ESPRESSO
    assert sum(label.score for label in result.labels) == pytest.approx(1.0, abs=1e-4)
    assert result.method == "score"


def test_both_protocols_over_grpc(grpc_client, photos):
    constrained = grpc_client.classify(_png(photos["coffee"]), ClassifyParams(protocol="constrained", top_k=2))
    scored = grpc_client.classify(_png(photos["cat"]), ClassifyParams(protocol="score", candidates=["tabby cat", "tiger cat"]))

    assert constrained.labels[0].id == ESPRESSO
    assert constrained.method == "constrained"
    assert scored.labels[0].id == TABBY
    assert sum(label.score for label in scored.labels) == pytest.approx(1.0, abs=1e-4)


def test_metrics_have_protocol_labels(client, photos):
    client.classify(_png(photos["cat"]), ClassifyParams(protocol="constrained"))
    client.classify(_png(photos["cat"]), ClassifyParams(protocol="score", candidates=["tabby cat", "tiger cat"]))

    text = client.metrics_text()

    assert 'protocol="constrained"' in text
    assert 'protocol="score"' in text
