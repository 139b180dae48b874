"""The real BentoML service on loopback with the demo model: protocols, batching, bad input."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from service.client import ClientError, HttpClient
from service.launcher import start_service
from service.schemas import ClassifyParams

pytestmark = pytest.mark.slow

# ImageNet-1k ids the demo photos must map to.
CAT_IDS = {"n02123045", "n02123159", "n02124075", "n02123394", "n02123597"}  # tabby, tiger, Egyptian, Persian, Siamese
COFFEE_IDS = {"n07920052", "n03063599", "n03063689", "n07930864"}  # espresso, coffee mug, coffeepot, cup
ROCKET_IDS = {"n03773504", "n04008634"}  # missile, projectile/missile

EXPECTED = {"cat": CAT_IDS, "coffee": COFFEE_IDS, "rocket": ROCKET_IDS}


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    from service.models.samples import sample_images

    return {name: _png(image) for name, image in sample_images().items()}


@pytest.fixture(scope="module")
def service(models_dir):
    overrides = {"server": {"grpc_enabled": False}, "batching": {"max_batch_size": 8}}
    with start_service(str(models_dir / "demo-llava"), config_overrides=overrides) as process:
        yield process


@pytest.fixture(scope="module")
def client(service):
    with HttpClient(service.url) as http_client:
        yield http_client


@pytest.mark.parametrize("photo", ["cat", "coffee", "rocket"])
@pytest.mark.parametrize("protocol", ["open", "choice"])
def test_demo_photo_maps_to_class(client, photos, photo: str, protocol: str) -> None:
    result = client.classify(photos[photo], ClassifyParams(protocol=protocol, top_k=3))

    assert result.labels, f"no labels for {photo}: answer {result.raw_answer!r}"
    assert result.labels[0].id in EXPECTED[photo], f"{photo}: {result.raw_answer!r} -> {result.labels[0]}"
    assert result.protocol == protocol
    assert not result.out_of_list
    assert not result.abstain
    assert result.timings.generate_ms > 0
    assert result.timings.total_ms >= result.timings.generate_ms


def test_two_stage_choice_offers_nearest_classes(client, photos) -> None:
    result = client.classify(photos["cat"], ClassifyParams(protocol="choice", num_options=5, seed=3))

    assert result.first_answer
    assert result.options is not None
    assert len(result.options) == 5
    assert result.method == "option"
    assert result.labels[0].id in {option.id for option in result.options}
    # Hard distractors: the other options are classes near the first answer, here other cats.
    assert len({option.id for option in result.options} & CAT_IDS) >= 2


def test_choice_option_order_follows_seed(client, photos) -> None:
    first = client.classify(photos["cat"], ClassifyParams(protocol="choice", seed=1))
    again = client.classify(photos["cat"], ClassifyParams(protocol="choice", seed=1))
    other = [client.classify(photos["cat"], ClassifyParams(protocol="choice", seed=seed)) for seed in (2, 3, 4)]

    assert [option.id for option in first.options] == [option.id for option in again.options]
    orders = {tuple(option.id for option in result.options) for result in other}
    assert len(orders | {tuple(option.id for option in first.options)}) > 1


def test_closed_protocol_with_candidates(client, photos) -> None:
    candidates = ["tabby cat", "espresso", "missile", "moped"]
    result = client.classify(photos["coffee"], ClassifyParams(protocol="closed", candidates=candidates))

    assert result.labels[0].id == "n07920052"
    assert {label.id for label in result.labels} <= {"n02123045", "n07920052", "n03773504", "n04008634", "n03785016"}


def test_multilabel_lists_objects(client, photos) -> None:
    result = client.classify(photos["coffee"], ClassifyParams(protocol="multilabel"))

    assert result.objects is not None
    assert len(result.objects) >= 2
    assert "n07920052" in {label.id for label in result.labels}


def test_out_of_list_answer_is_reported(client, photos) -> None:
    result = client.classify(photos["astronaut"], ClassifyParams(protocol="open"))

    assert result.raw_answer.strip().lower().startswith("astronaut")
    assert result.out_of_list
    assert result.method == "none"


def test_response_echoes_prompt_and_model(client, photos, service) -> None:
    result = client.classify(photos["rocket"])

    assert result.prompt_id == "open-v1"
    assert result.model.endswith("demo-llava")
    assert result.taxonomy == "imagenet-1k"
    assert len(result.request_id) == 32


def test_classify_batch_keeps_upload_order(client, photos) -> None:
    names = ["rocket", "cat", "coffee"]
    results = client.classify_batch([photos[name] for name in names], ClassifyParams(top_k=1))

    assert [result.labels[0].id in EXPECTED[name] for name, result in zip(names, results, strict=True)] == [True] * 3


def test_concurrent_requests_share_batches(client, photos) -> None:
    images = [photos[name] for name in ("cat", "coffee", "rocket", "motorcycle")] * 8

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda data: client.classify(data, ClassifyParams(top_k=1)), images))

    assert len(results) == 32
    metrics = client.metrics_text()
    count = _histogram_value(metrics, "mllm_classify_batch_size_images_count")
    total = _histogram_value(metrics, "mllm_classify_batch_size_images_sum")
    at_most_one = _histogram_value(metrics, 'mllm_classify_batch_size_images_bucket{le="1.0"')
    assert count > at_most_one, "every batch held a single image"
    assert total / count > 1.0


def _histogram_value(metrics: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(prefix))


def test_taxonomies_and_health(service) -> None:
    taxonomies = httpx.get(f"{service.url}/taxonomies", timeout=10).json()["taxonomies"]
    health = httpx.get(f"{service.url}/readyz", timeout=10)
    info = httpx.get(f"{service.url}/info", timeout=10)

    assert taxonomies[0]["name"] == "imagenet-1k"
    assert taxonomies[0]["num_classes"] == 1000
    assert health.status_code == 200
    assert info.status_code == 200
    assert info.json()["model"].endswith("demo-llava")


def test_openapi_lists_classify(service) -> None:
    spec = httpx.get(f"{service.url}/docs.json", timeout=10).json()

    assert "/classify" in spec["paths"]
    assert "/classify_batch" in spec["paths"]
    assert not [path for path in spec["paths"] if path.startswith("/internal")]
    # The BentoML context parameter is injected, not a form field.
    assert '"ctx"' not in json.dumps(spec)


BAD_REQUESTS = [
    ({"image": ("x.png", b"", "image/png")}, {}, 400, "image", "empty"),
    ({"image": ("x.png", b"\x89PNG\r\n\x1a\nbroken", "image/png")}, {}, 400, "image", "not a recognised image"),
    ({"image": ("x.pdf", b"%PDF-1.4 ...", "application/pdf")}, {}, 400, "image", "PDF"),
    ("cat", {"protocol": "guess"}, 400, "protocol", "protocol"),
    ("cat", {"taxonomy": "no-such-taxonomy"}, 400, "taxonomy", "unknown taxonomy"),
    ("cat", {"candidates": "[]"}, 400, "candidates", "empty"),
    ("cat", {"candidates": json.dumps(["tabby cat", "tabby cat"])}, 400, "candidates", "twice"),
    ("cat", {"candidates": json.dumps(["tabby cat", "no such class xyz"])}, 400, "candidates", "no such class xyz"),
    ("cat", {"top_k": "500"}, 400, "top_k", "maximum"),
    ("cat", {"protocol": "closed"}, 400, "candidates", "do not fit"),
    ("cat", {"topk": "3"}, 400, "topk", "unknown form field"),
    ("cat", {"candidates": ["tabby cat", "espresso"]}, 400, "candidates", "more than once"),
    ({"image": ("cat.png", b"", "image/png"), "img": ("x.png", b"x", "image/png")}, {}, 400, "img", "unknown form field"),
]


@pytest.mark.parametrize(("files", "data", "status", "field", "message"), BAD_REQUESTS)
def test_bad_input_gets_4xx_naming_field(service, client, photos, files, data, status, field, message) -> None:
    if files == "cat":
        files = {"image": ("cat.png", photos["cat"], "image/png")}
    response = httpx.post(f"{service.url}/classify", files=files, data=data, timeout=60)

    assert response.status_code == status
    body = response.json()
    assert body["field"] == field
    assert message.lower() in body["error"].lower()

    # The service keeps serving after every bad request.
    assert client.classify(photos["rocket"], ClassifyParams(top_k=1)).labels[0].id in ROCKET_IDS


def test_client_raises_client_error(client) -> None:
    with pytest.raises(ClientError) as caught:
        client.classify(b"not an image")
    assert caught.value.status == 400


def test_unknown_taxonomy_is_no_metric_label(service, client, photos) -> None:
    response = httpx.post(
        f"{service.url}/classify",
        files={"image": ("cat.png", photos["cat"], "image/png")},
        data={"taxonomy": "client-chosen-name"},
        timeout=60,
    )

    assert response.status_code == 400
    assert "client-chosen-name" not in client.metrics_text()


def test_repeated_image_field_points_to_batch(service, photos) -> None:
    files = [("image", ("a.png", photos["cat"], "image/png")), ("image", ("b.png", photos["rocket"], "image/png"))]
    response = httpx.post(f"{service.url}/classify", files=files, timeout=60)

    assert response.status_code == 400
    assert response.json()["field"] == "image"
    assert "/classify_batch" in response.json()["error"]
