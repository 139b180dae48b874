"""Config loading with env overrides, and request field parsing."""

from __future__ import annotations

import pytest

from service.config import ConfigError, load_config
from service.errors import ServiceError
from service.requests import build_params, parse_candidates


def test_config_defaults_load() -> None:
    config = load_config(environ={})
    assert config.mapping.taxonomy == "imagenet-1k"
    assert config.batching.max_batch_size >= 1


def test_config_env_overrides_typed_values() -> None:
    config = load_config(
        environ={"MLLM_CLASSIFY_BATCHING__MAX_BATCH_SIZE": "16", "MLLM_CLASSIFY_SERVER__GRPC_ENABLED": "false"}
    )
    assert config.batching.max_batch_size == 16
    assert config.server.grpc_enabled is False


def test_config_file_overrides_defaults(tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  model_id: models/demo-llava\nlimits:\n  max_top_k: 7\n")
    config = load_config(path, environ={})
    assert config.model.model_id == "models/demo-llava"
    assert config.limits.max_top_k == 7
    assert config.limits.max_candidates == 200


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MLLM_CLASSIFY_BATCHING__MAX_BATCH_SIZE": "0"}, "max_batch_size"),
        ({"MLLM_CLASSIFY_BATCHING__NO_SUCH_KEY": "1"}, "no_such_key"),
        ({"MLLM_CLASSIFY_MODEL__BACKEND": "onnx"}, "backend"),
    ],
)
def test_config_rejects_invalid_values(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(environ=environ)


def test_config_rejects_non_mapping_file(tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ('["tabby", "n02123045"]', ["tabby", "n02123045"]),
        ("tabby cat, tiger cat", ["tabby cat", "tiger cat"]),
    ],
)
def test_parse_candidates_forms(raw, expected) -> None:
    assert parse_candidates(raw) == expected


@pytest.mark.parametrize("raw", ['["unterminated', '{"a": 1}', "[1, 2]"])
def test_parse_candidates_rejects_bad_json(raw: str) -> None:
    with pytest.raises(ServiceError) as caught:
        parse_candidates(raw)
    assert caught.value.status == 400
    assert caught.value.field == "candidates"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"protocol": "guess"}, "protocol"),
        ({"top_k": 0}, "top_k"),
        ({"num_options": 1}, "num_options"),
        ({"max_new_tokens": 100000}, "max_new_tokens"),
    ],
)
def test_build_params_names_invalid_field(fields: dict, field: str) -> None:
    with pytest.raises(ServiceError) as caught:
        build_params(**fields)
    assert caught.value.status == 400
    assert caught.value.field == field


def test_build_params_defaults() -> None:
    params = build_params(protocol="choice", candidates='["a", "b"]', top_k=3, taxonomy=None)
    assert params.protocol == "choice"
    assert params.candidates == ["a", "b"]
    assert params.taxonomy is None


def test_config_leaves_assist_variables_to_assist() -> None:
    config = load_config(environ={"MLLM_CLASSIFY_ASSIST__DATABASE_URL": "sqlite:///x.sqlite3"})
    assert config.mapping.taxonomy == "imagenet-1k"
