"""Conversions between the pydantic models and the v1 messages, and the committed stubs."""

from __future__ import annotations

import pytest

from service.errors import ServiceError
from service.grpc import convert
from service.grpc.generated import classifier_pb2 as pb
from service.requests import build_params
from service.schemas import ClassifyParams, ClassifyResult, Label, ObjectResult, StageTimings, TaxonomyInfo


def _result(**overrides) -> ClassifyResult:
    fields = dict(
        request_id="r-1",
        labels=[Label(id="n02123045", index=281, name="tabby, tabby cat", score=0.91), Label(id="n02124075", index=285, name="Egyptian cat", score=0.42)],
        raw_answer="tabby cat",
        method="embedding",
        margin=0.49,
        similarity=0.93,
        out_of_list=False,
        abstain=False,
        ambiguous=True,
        protocol="choice",
        prompt_id="choice.v1",
        model="models/demo-llava",
        taxonomy="imagenet-1k",
        timings=StageTimings(decode_ms=1.5, queue_ms=2.0, preprocess_ms=3.25, generate_ms=40.0, map_ms=0.5, total_ms=48.0),
        options=[Label(id="n02123045", index=281, name="tabby, tabby cat", score=1.0)],
        first_answer="a cat",
        objects=[ObjectResult(answer="cat", labels=[], method="none", margin=0.0, out_of_list=True)],
        generated_tokens=4,
        prompt_tokens=612,
    )
    fields.update(overrides)
    return ClassifyResult(**fields)


def test_result_round_trip_full():
    result = _result()

    assert convert.result_from_proto(convert.result_to_proto(result)) == result


def test_result_round_trip_without_optionals():
    result = _result(options=None, first_answer=None, objects=None, protocol="open")

    restored = convert.result_from_proto(convert.result_to_proto(result))

    assert restored == result
    assert restored.first_answer is None
    assert restored.options is None


def test_result_survives_wire_format():
    message = convert.result_to_proto(_result())

    parsed = pb.ClassifyResult.FromString(message.SerializeToString())

    assert convert.result_from_proto(parsed) == _result()


def test_params_unset_fields_take_defaults():
    assert convert.params_from_proto(pb.ClassifyParams()) == ClassifyParams()


@pytest.mark.parametrize(
    "params",
    [
        ClassifyParams(),
        ClassifyParams(protocol="choice", taxonomy="imagenet-1k", candidates=["tabby cat", "n02124075"], top_k=3, seed=7, num_options=4, max_new_tokens=12),
        ClassifyParams(protocol="score", top_k=1, seed=-3),
    ],
)
def test_params_round_trip(params):
    assert convert.params_from_proto(convert.params_to_proto(params)) == params


@pytest.mark.parametrize(
    ("message", "form_fields"),
    [
        (pb.ClassifyParams(top_k=0), {"top_k": 0}),
        (pb.ClassifyParams(protocol="guess"), {"protocol": "guess"}),
        (pb.ClassifyParams(num_options=1), {"num_options": 1}),
        (pb.ClassifyParams(max_new_tokens=513), {"max_new_tokens": 513}),
    ],
)
def test_params_errors_match_http(message, form_fields):
    with pytest.raises(ServiceError) as over_grpc:
        convert.params_from_proto(message)
    with pytest.raises(ServiceError) as over_http:
        build_params(**form_fields)

    assert over_grpc.value.status == 400
    assert over_grpc.value.message == over_http.value.message
    assert over_grpc.value.field == over_http.value.field


def test_taxonomy_round_trip():
    info = TaxonomyInfo(name="imagenet-1k", num_classes=1000, hash="abc123", default=True, fits_closed_prompt=False)

    assert convert.taxonomy_from_proto(convert.taxonomy_to_proto(info)) == info


def test_committed_stubs_up_to_date():
    pytest.importorskip("grpc_tools", reason="grpcio-tools comes with the grpc-tools extra")
    from service.grpc import codegen

    assert codegen.differences(codegen.generate(), codegen.OUTPUT_DIR) == []
