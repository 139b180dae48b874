"""The gRPC API over a real loopback channel against `bentoml serve` with the demo model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from service.client import HttpClient
from service.grpc.client import GrpcClient, GrpcClientError
from service.grpc.generated import classifier_pb2 as pb
from service.grpc.generated import classifier_pb2_grpc as pb_grpc
from service.launcher import free_port, start_service
from service.schemas import ClassifyParams, ClassifyResult

from grpc_support import StartupProbe, metric_total, scrape

pytestmark = pytest.mark.slow

# Small enough to test the limit with a few MiB, large enough for every sample photo.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
PARITY_PHOTOS = ("cat", "coffee", "rocket")


@pytest.fixture(scope="module")
def service(demo_model, photos):
    grpc_port = free_port()
    probe = StartupProbe(grpc_port, photos["cat"])
    probe.start()
    overrides = {"batching": {"max_batch_size": 8}, "server": {"grpc_max_message_bytes": MAX_MESSAGE_BYTES}}
    try:
        with start_service(demo_model, grpc_port=grpc_port, config_overrides=overrides, ready_timeout_s=420) as svc:
            probe.wait(timeout_s=120)
            with GrpcClient(svc.grpc_target) as client:
                client.wait_for_serving(timeout_s=60)
            svc.startup_probe = probe  # type: ignore[attr-defined]
            yield svc
    finally:
        probe.stop()


@pytest.fixture(scope="module")
def client(service):
    # One try per call, so each test gets the status code the server sent.
    with GrpcClient(service.grpc_target, max_attempts=1) as grpc_client:
        yield grpc_client


@pytest.fixture(scope="module")
def http_client(service):
    with HttpClient(service.url) as client:
        yield client


def _stub(target: str) -> tuple[grpc.Channel, pb_grpc.ClassifierStub]:
    channel = grpc.insecure_channel(target, options=[("grpc.enable_retries", 0)])
    return channel, pb_grpc.ClassifierStub(channel)


# -- health and readiness ------------------------------------------------------


def test_health_not_serving_then_serving(service):
    statuses = service.startup_probe.statuses

    assert "NOT_SERVING" in statuses, statuses
    assert statuses[-1] == "SERVING", statuses
    first_serving = statuses.index("SERVING")
    assert statuses.index("NOT_SERVING") < first_serving, statuses
    assert "NOT_SERVING" not in statuses[first_serving:], statuses


def test_classify_before_ready_unavailable(service):
    probe = service.startup_probe

    assert grpc.StatusCode.UNAVAILABLE in probe.classify_codes, probe.classify_codes
    position = probe.classify_codes.index(grpc.StatusCode.UNAVAILABLE)
    assert "loading" in probe.classify_messages[position]


def test_health_of_named_service(client):
    assert client.health("mllm_classify.v1.Classifier") == "SERVING"
    assert client.health() == "SERVING"


# -- results ---------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["open", "choice"])
def test_grpc_matches_http(client, http_client, photos, protocol):
    params = ClassifyParams(protocol=protocol, top_k=3)
    for name in PARITY_PHOTOS:
        over_http = http_client.classify(photos[name], params)
        over_grpc = client.classify(photos[name], params)

        assert [label.id for label in over_grpc.labels] == [label.id for label in over_http.labels], name
        assert [label.score for label in over_grpc.labels] == pytest.approx([label.score for label in over_http.labels])
        assert over_grpc.raw_answer == over_http.raw_answer
        assert over_grpc.method == over_http.method
        assert over_grpc.out_of_list == over_http.out_of_list
        assert over_grpc.abstain == over_http.abstain
        assert over_grpc.protocol == over_http.protocol == protocol
        assert over_grpc.prompt_id == over_http.prompt_id
        assert over_grpc.model == over_http.model
        assert over_grpc.taxonomy == over_http.taxonomy
        assert (over_grpc.options is None) == (over_http.options is None)


def test_demo_answers_over_grpc(client, photos):
    result = client.classify(photos["cat"], ClassifyParams(top_k=3))

    assert result.raw_answer == "tabby cat"
    assert result.labels[0].index == 281
    assert result.timings.total_ms > 0
    assert result.generated_tokens > 0


def test_request_id_echoed(client, photos):
    result = client.classify(photos["coffee"], request_id="order-17:item-3")

    assert result.request_id == "order-17:item-3"


def test_stream_of_64_images(client, photos):
    names = list(photos)
    items = [(f"img-{index:02d}", photos[names[index % len(names)]], None) for index in range(64)]
    expected_name = {request_id: names[index % len(names)] for index, (request_id, _, _) in enumerate(items)}

    outcomes = list(client.classify_stream(items))

    assert len(outcomes) == 64
    assert {request_id for request_id, _ in outcomes} == set(expected_name)
    single = {name: client.classify(photos[name]) for name in set(expected_name.values())}
    for request_id, outcome in outcomes:
        assert isinstance(outcome, ClassifyResult), outcome
        assert outcome.request_id == request_id
        assert outcome.labels[0].id == single[expected_name[request_id]].labels[0].id, request_id


def test_classify_batch_keeps_order(client, photos):
    names = ["rocket", "cat", "motorcycle", "cat", "clock"]
    single = [client.classify(photos[name]).raw_answer for name in names]

    results = client.classify_batch([photos[name] for name in names])

    assert [result.raw_answer for result in results] == single
    assert len(set(single)) >= 3, single


def test_stream_item_errors(client, photos):
    items = [
        ("good-1", photos["cat"], None),
        ("broken", b"not an image", None),
        ("bad-top-k", photos["cat"], ClassifyParams.model_construct(**{**ClassifyParams().model_dump(), "top_k": 0})),
        ("good-2", photos["rocket"], None),
    ]

    outcomes = dict(client.classify_stream(items))

    assert isinstance(outcomes["good-1"], ClassifyResult)
    assert isinstance(outcomes["good-2"], ClassifyResult)
    assert isinstance(outcomes["broken"], GrpcClientError)
    assert outcomes["broken"].code == grpc.StatusCode.INVALID_ARGUMENT
    assert outcomes["broken"].field == "image"
    assert isinstance(outcomes["bad-top-k"], GrpcClientError)
    assert outcomes["bad-top-k"].code == grpc.StatusCode.INVALID_ARGUMENT
    assert outcomes["bad-top-k"].field == "top_k"


def test_stream_rejects_missing_and_duplicate_ids(service, photos):
    channel, stub = _stub(service.grpc_target)
    requests = [
        pb.ClassifyStreamRequest(request_id="", image=photos["cat"]),
        pb.ClassifyStreamRequest(request_id="same", image=photos["cat"]),
        pb.ClassifyStreamRequest(request_id="same", image=photos["cat"]),
    ]
    with channel:
        responses = list(stub.ClassifyStream(iter(requests), timeout=60))

    errors = [response for response in responses if response.HasField("error")]
    results = [response for response in responses if response.HasField("result")]
    assert len(responses) == 3
    assert [error.error.field for error in errors] == ["request_id", "request_id"]
    assert all(error.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] for error in errors)
    assert [result.request_id for result in results] == ["same"]


def test_concurrent_calls_share_batches(service, photos):
    names = list(photos)
    before = scrape(service.url)

    # 32 calls at once over one channel; the adaptive batcher merges them.
    with GrpcClient(service.grpc_target, max_attempts=1) as grpc_client, ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(grpc_client.classify, photos[names[index % len(names)]]) for index in range(32)]
        results = [future.result() for future in futures]

    after = scrape(service.url)
    batches = metric_total(after, "mllm_classify_batch_size_images_count") - metric_total(
        before, "mllm_classify_batch_size_images_count"
    )
    single_image_batches = metric_total(after, "mllm_classify_batch_size_images_bucket", le="1.0") - metric_total(
        before, "mllm_classify_batch_size_images_bucket", le="1.0"
    )
    images = metric_total(after, "mllm_classify_batch_size_images_sum") - metric_total(
        before, "mllm_classify_batch_size_images_sum"
    )
    ok_calls = metric_total(after, "mllm_classify_grpc_requests_total", method="Classify", code="OK") - metric_total(
        before, "mllm_classify_grpc_requests_total", method="Classify", code="OK"
    )
    assert len(results) == 32
    assert images >= 32
    assert batches < images, "every batch held a single image"
    assert single_image_batches < batches
    assert ok_calls == 32


def test_list_taxonomies_matches_http(client, http_client):
    over_grpc = client.taxonomies()

    assert over_grpc == http_client.taxonomies()
    assert [info.name for info in over_grpc if info.default] == ["imagenet-1k"]


# -- status codes ----------------------------------------------------------------


def test_invalid_image_argument(client, service):
    with pytest.raises(GrpcClientError) as caught:
        client.classify(b"this is not an image")
    http_response = httpx.post(f"{service.url}/classify", files={"image": ("x.bin", b"this is not an image")}, timeout=30)

    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.field == "image"
    assert caught.value.request_id
    assert http_response.status_code == 400
    assert caught.value.message == http_response.json()["error"]


@pytest.mark.parametrize(
    ("params", "form", "field"),
    [
        (pb.ClassifyParams(top_k=0), {"top_k": "0"}, "top_k"),
        (pb.ClassifyParams(protocol="guess"), {"protocol": "guess"}, "protocol"),
        (pb.ClassifyParams(num_options=40), {"num_options": "40"}, "num_options"),
        (pb.ClassifyParams(taxonomy="no-such-taxonomy"), {"taxonomy": "no-such-taxonomy"}, "taxonomy"),
    ],
)
def test_invalid_parameter_argument(service, photos, params, form, field):
    channel, stub = _stub(service.grpc_target)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.Classify(pb.ClassifyRequest(image=photos["cat"], params=params), timeout=60)
    http_response = httpx.post(
        f"{service.url}/classify", data=form, files={"image": ("cat.png", photos["cat"])}, timeout=60
    )

    trailing = dict(caught.value.trailing_metadata())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailing["error-field"] == field
    assert http_response.status_code == 400
    assert caught.value.details() == http_response.json()["error"]


def test_deadline_exceeded(service, photos):
    before = scrape(service.url)

    # Far below the time of one demo-model request, so the server cannot
    # finish in time and answer OK after the client has given up.
    with GrpcClient(service.grpc_target, timeout=0.005, max_attempts=1) as hurried:
        with pytest.raises(GrpcClientError) as caught:
            hurried.classify(photos["cat"])

    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED

    # The server records the call once its handler has given up on it.
    counted = 0.0
    for _ in range(50):
        after = scrape(service.url)
        counted = metric_total(after, "mllm_classify_grpc_requests_total", method="Classify", code="DEADLINE_EXCEEDED")
        counted -= metric_total(before, "mllm_classify_grpc_requests_total", method="Classify", code="DEADLINE_EXCEEDED")
        if counted:
            break
        time.sleep(0.1)
    assert counted == 1


def test_message_over_limit_rejected(client):
    with pytest.raises(GrpcClientError) as caught:
        client.classify(b"\0" * (MAX_MESSAGE_BYTES + 1024))

    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in caught.value.message


def test_message_under_limit_reaches_checks(client):
    with pytest.raises(GrpcClientError) as caught:
        client.classify(b"\0" * (MAX_MESSAGE_BYTES - 64 * 1024))

    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.field == "image"


# -- reflection, metrics and the CLI -------------------------------------------------


def test_reflection_describes_api(service):
    with grpc.insecure_channel(service.grpc_target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = database.get_services()
        file_descriptor = database.FindFileContainingSymbol("mllm_classify.v1.Classifier")

    assert "mllm_classify.v1.Classifier" in services
    assert "grpc.health.v1.Health" in services
    assert file_descriptor.name == "mllm_classify/v1/classifier.proto"
    assert [method.name for method in file_descriptor.service[0].method] == ["Classify", "ClassifyStream", "ListTaxonomies"]


def test_grpc_metrics_on_metrics_endpoint(client, service, photos):
    client.classify(photos["rocket"])
    with pytest.raises(GrpcClientError):
        client.classify(b"not an image either")
    text = scrape(service.url)

    assert metric_total(text, "mllm_classify_grpc_requests_total", method="Classify", code="OK") >= 1
    assert metric_total(text, "mllm_classify_grpc_request_duration_seconds_count", method="Classify") >= 1
    assert metric_total(text, "mllm_classify_grpc_requests_total", method="Classify", code="INVALID_ARGUMENT") >= 1
    assert metric_total(text, "mllm_classify_errors_total", reason="invalid_image", transport="grpc") >= 1


def test_cli_classify_over_grpc(service, photos, tmp_path):
    image_path = tmp_path / "cat.png"
    image_path.write_bytes(photos["cat"])
    environment = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "HF_HUB_OFFLINE": "1"}

    completed = subprocess.run(
        [str(Path(sys.executable).with_name("mllm-classify")), "classify", "--grpc", service.grpc_target, "--top-k", "3", str(image_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )

    assert completed.returncode == 0, completed.stderr
    output = json.loads(completed.stdout.strip().splitlines()[-1])
    assert output["image"] == str(image_path)
    assert output["raw_answer"] == "tabby cat"
    assert output["labels"][0]["index"] == 281
    assert 1 <= len(output["labels"]) <= 3
