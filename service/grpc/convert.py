"""Conversions between the pydantic API models and the v1 protobuf messages.

Request parameters pass through `service.requests.build_params`, the same
validation as the HTTP form fields, so both transports reject the same values
with the same messages. proto3 repeated fields cannot be absent, so an empty
`options` or `objects` list converts back to None, which is what the HTTP API
returns for protocols that do not fill them.
"""

from __future__ import annotations

from service.grpc.generated import classifier_pb2 as pb
from service.requests import build_params
from service.schemas import ClassifyParams, ClassifyResult, Label, ObjectResult, StageTimings, TaxonomyInfo

# ClassifyParams fields that are `optional` in the proto: an unset one takes the pydantic default.
_OPTIONAL_PARAM_FIELDS = ("taxonomy", "top_k", "seed", "num_options", "max_new_tokens")


def params_from_proto(message: pb.ClassifyParams) -> ClassifyParams:
    """Validate proto parameters into ClassifyParams; raise a 400 ServiceError naming the field."""
    fields: dict[str, object] = {
        "protocol": message.protocol or None,
        "candidates": list(message.candidates) or None,
    }
    for name in _OPTIONAL_PARAM_FIELDS:
        fields[name] = getattr(message, name) if message.HasField(name) else None
    return build_params(**fields)


def params_to_proto(params: ClassifyParams | None) -> pb.ClassifyParams:
    params = params or ClassifyParams()
    message = pb.ClassifyParams(
        protocol=params.protocol,
        candidates=params.candidates or [],
        top_k=params.top_k,
        seed=params.seed,
        num_options=params.num_options,
    )
    if params.taxonomy is not None:
        message.taxonomy = params.taxonomy
    if params.max_new_tokens is not None:
        message.max_new_tokens = params.max_new_tokens
    return message


def _label_to_proto(label: Label) -> pb.Label:
    return pb.Label(id=label.id, index=label.index, name=label.name, score=label.score)


def _label_from_proto(message: pb.Label) -> Label:
    return Label(id=message.id, index=message.index, name=message.name, score=message.score)


def _object_to_proto(item: ObjectResult) -> pb.ObjectResult:
    return pb.ObjectResult(
        answer=item.answer,
        labels=[_label_to_proto(label) for label in item.labels],
        method=item.method,
        margin=item.margin,
        out_of_list=item.out_of_list,
    )


def _object_from_proto(message: pb.ObjectResult) -> ObjectResult:
    return ObjectResult(
        answer=message.answer,
        labels=[_label_from_proto(label) for label in message.labels],
        method=message.method,  # type: ignore[arg-type]
        margin=message.margin,
        out_of_list=message.out_of_list,
    )


def result_to_proto(result: ClassifyResult) -> pb.ClassifyResult:
    message = pb.ClassifyResult(
        request_id=result.request_id,
        labels=[_label_to_proto(label) for label in result.labels],
        raw_answer=result.raw_answer,
        method=result.method,
        margin=result.margin,
        similarity=result.similarity,
        out_of_list=result.out_of_list,
        abstain=result.abstain,
        ambiguous=result.ambiguous,
        protocol=result.protocol,
        prompt_id=result.prompt_id,
        model=result.model,
        taxonomy=result.taxonomy,
        timings=pb.StageTimings(**result.timings.model_dump()),
        options=[_label_to_proto(label) for label in result.options or []],
        objects=[_object_to_proto(item) for item in result.objects or []],
        generated_tokens=result.generated_tokens,
        prompt_tokens=result.prompt_tokens,
    )
    if result.first_answer is not None:
        message.first_answer = result.first_answer
    return message


def result_from_proto(message: pb.ClassifyResult) -> ClassifyResult:
    timings = message.timings
    return ClassifyResult(
        request_id=message.request_id,
        labels=[_label_from_proto(label) for label in message.labels],
        raw_answer=message.raw_answer,
        method=message.method,  # type: ignore[arg-type]
        margin=message.margin,
        similarity=message.similarity,
        out_of_list=message.out_of_list,
        abstain=message.abstain,
        ambiguous=message.ambiguous,
        protocol=message.protocol,  # type: ignore[arg-type]
        prompt_id=message.prompt_id,
        model=message.model,
        taxonomy=message.taxonomy,
        timings=StageTimings(
            decode_ms=timings.decode_ms,
            queue_ms=timings.queue_ms,
            preprocess_ms=timings.preprocess_ms,
            generate_ms=timings.generate_ms,
            map_ms=timings.map_ms,
            total_ms=timings.total_ms,
        ),
        options=[_label_from_proto(label) for label in message.options] or None,
        first_answer=message.first_answer if message.HasField("first_answer") else None,
        objects=[_object_from_proto(item) for item in message.objects] or None,
        generated_tokens=message.generated_tokens,
        prompt_tokens=message.prompt_tokens,
    )


def taxonomy_to_proto(info: TaxonomyInfo) -> pb.TaxonomyInfo:
    return pb.TaxonomyInfo(
        name=info.name,
        num_classes=info.num_classes,
        hash=info.hash,
        is_default=info.default,
        fits_closed_prompt=info.fits_closed_prompt,
    )


def taxonomy_from_proto(message: pb.TaxonomyInfo) -> TaxonomyInfo:
    return TaxonomyInfo(
        name=message.name,
        num_classes=message.num_classes,
        hash=message.hash,
        default=message.is_default,
        fits_closed_prompt=message.fits_closed_prompt,
    )
