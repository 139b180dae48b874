"""Parse HTTP form fields into ClassifyParams and record per-request metrics."""

from __future__ import annotations

import json

from pydantic import ValidationError

from service import metrics
from service.errors import ServiceError, invalid_parameter
from service.schemas import ClassifyParams, ClassifyResult


def parse_candidates(raw: str | list[str] | None) -> list[str] | None:
    """Accept a JSON array of strings or a comma-separated string; None or "" means no candidates."""
    if raw is None:
        return None
    if isinstance(raw, list):
        return raw
    text = raw.strip()
    if text == "":
        return None
    if text.startswith("{"):
        raise invalid_parameter("candidates must be a JSON array of strings, not an object", "candidates")
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise invalid_parameter(f"candidates is not a valid JSON array: {error.msg}", "candidates") from error
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise invalid_parameter("candidates must be a JSON array of strings", "candidates")
        return value
    return [item.strip() for item in text.split(",")]


def build_params(**fields: object) -> ClassifyParams:
    """Validate request fields into ClassifyParams, raising a 400 ServiceError naming the field."""
    values = {name: value for name, value in fields.items() if value is not None}
    if "candidates" in fields:
        values["candidates"] = parse_candidates(fields["candidates"])  # type: ignore[arg-type]
        if values["candidates"] is None:
            values.pop("candidates")
    try:
        return ClassifyParams.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise invalid_parameter(f"invalid {field}: {first['msg']}", field) from error


def record_result(result: ClassifyResult, transport: str) -> None:
    labels = {"protocol": result.protocol, "model": result.model, "taxonomy": result.taxonomy}
    metrics.REQUESTS.labels(status="ok", **labels).inc()
    metrics.REQUEST_LATENCY.labels(**labels).observe(result.timings.total_ms / 1000)
    for stage in ("decode", "queue", "preprocess", "generate", "map"):
        seconds = getattr(result.timings, f"{stage}_ms") / 1000
        metrics.STAGE_LATENCY.labels(stage=stage, **labels).observe(seconds)
    metrics.GENERATED_TOKENS.labels(**labels).inc(result.generated_tokens)
    metrics.PROMPT_TOKENS.labels(**labels).inc(result.prompt_tokens)
    if result.out_of_list:
        metrics.OUT_OF_LIST.labels(**labels).inc()
    if result.abstain:
        metrics.ABSTENTIONS.labels(**labels).inc()
    else:
        metrics.MAPPING_SIMILARITY.labels(**labels).observe(max(0.0, min(1.0, result.similarity)))


def record_error(error: ServiceError, transport: str, params: ClassifyParams | None, model: str, taxonomy: str) -> None:
    metrics.ERRORS.labels(reason=error.reason, transport=transport).inc()
    protocol = params.protocol if params is not None else "unknown"
    metrics.REQUESTS.labels(protocol=protocol, model=model, taxonomy=taxonomy, status=error.reason).inc()
