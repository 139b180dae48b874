"""Two BentoML workers on one gRPC port, the API key and the concurrency cap, over real channels."""

from __future__ import annotations

import re
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from service.grpc.client import GrpcClient, GrpcClientError
from service.grpc.generated import classifier_pb2 as pb
from service.grpc.generated import classifier_pb2_grpc as pb_grpc
from service.launcher import free_port, start_service
from service.schemas import ClassifyResult

pytestmark = pytest.mark.slow

API_KEY = "test-key-5d1f0c"


@pytest.fixture(scope="module")
def service(demo_model):
    overrides = {"server": {"workers": 2}, "limits": {"max_concurrency": 1}}
    with start_service(
        demo_model, grpc_port=free_port(), env={"MLLM_CLASSIFY_API_KEY": API_KEY}, config_overrides=overrides,
        ready_timeout_s=420,
    ) as svc:
        # Health over one connection shows one worker; the log shows both.
        deadline = time.monotonic() + 120
        while len(_serving_pids(svc)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        yield svc


def _serving_pids(service) -> set[str]:
    pattern = rf"gRPC health is SERVING on {re.escape(service.grpc_target)} \(pid (\d+)\)"
    return set(re.findall(pattern, service.log_text()))


def _listening_pids(service) -> set[str]:
    pattern = rf"gRPC server listening on {re.escape(service.grpc_target)} \(pid (\d+)"
    return set(re.findall(pattern, service.log_text()))


# -- several workers -------------------------------------------------------------


def test_two_workers_share_port(service, photos):
    listening = _listening_pids(service)

    assert len(listening) == 2, service.log_text()[-3000:]
    assert _serving_pids(service) == listening

    # Each client opens its own connection, which the kernel hands to either worker.
    for _ in range(6):
        with GrpcClient(service.grpc_target, api_key=API_KEY, max_attempts=1) as client:
            assert client.classify(photos["cat"]).raw_answer == "tabby cat"


# -- API key -----------------------------------------------------------------------


@pytest.mark.parametrize("api_key", [None, "wrong-key"])
def test_missing_or_wrong_key_unauthenticated(service, photos, api_key):
    with GrpcClient(service.grpc_target, api_key=api_key, max_attempts=1) as client:
        with pytest.raises(GrpcClientError) as classify_error:
            client.classify(photos["cat"])
        with pytest.raises(GrpcClientError) as taxonomies_error:
            client.taxonomies()
        with pytest.raises(GrpcClientError) as stream_error:
            list(client.classify_stream([("one", photos["cat"], None)]))

    assert classify_error.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "API key" in classify_error.value.message
    assert taxonomies_error.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert stream_error.value.code == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "metadata",
    [(("authorization", f"Bearer {API_KEY}"),), (("x-api-key", API_KEY),)],
    ids=["bearer", "x-api-key"],
)
def test_valid_key_accepted(service, photos, metadata):
    with grpc.insecure_channel(service.grpc_target) as channel:
        response = pb_grpc.ClassifierStub(channel).Classify(
            pb.ClassifyRequest(image=photos["rocket"]), metadata=metadata, timeout=60
        )

    assert response.result.raw_answer == "missile"


def test_health_and_reflection_open_without_key(service):
    with grpc.insecure_channel(service.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        services = ProtoReflectionDescriptorDatabase(channel).get_services()

    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert "mllm_classify.v1.Classifier" in services


# -- concurrency cap ------------------------------------------------------------------


def test_concurrency_cap_resource_exhausted(service, photos):
    metadata = (("authorization", f"Bearer {API_KEY}"),)

    # One channel is one connection, so all eight calls reach the same worker,
    # which admits one image at a time.
    with grpc.insecure_channel(service.grpc_target, options=[("grpc.enable_retries", 0)]) as channel:
        stub = pb_grpc.ClassifierStub(channel)
        calls = [stub.Classify.future(pb.ClassifyRequest(image=photos["cat"]), metadata=metadata, timeout=60) for _ in range(8)]
        codes = []
        rejections = []
        for call in calls:
            codes.append(call.code())
            if call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                rejections.append(call)

    assert grpc.StatusCode.OK in codes, codes
    assert rejections, codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert "limit of 1" in rejections[0].details()
    assert dict(rejections[0].trailing_metadata())["retry-after"] == "1"


def test_stream_stays_under_cap(service, photos):
    # A stream works on at most max_concurrency images at once, so a bulk
    # client is slowed down by flow control instead of being rejected.
    items = [(f"item-{index}", photos["rocket"], None) for index in range(10)]

    with GrpcClient(service.grpc_target, api_key=API_KEY, max_attempts=1) as client:
        outcomes = dict(client.classify_stream(items))

    assert sorted(outcomes) == sorted(request_id for request_id, _, _ in items)
    assert all(isinstance(outcome, ClassifyResult) for outcome in outcomes.values()), outcomes
