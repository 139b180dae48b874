"""The runner against a running service over HTTP and gRPC, with the supervised baseline."""

from __future__ import annotations

import pytest

from evaluation.datasets import load_bundled
from evaluation.grid import Setting
from evaluation.remap import Remapper
from evaluation.runner import Runner
from evaluation.store import ResultStore, read_rows
from evaluation.transports import GrpcTransport, HttpTransport

pytestmark = pytest.mark.slow

SETTINGS = [Setting(batch_size=4), Setting(protocol="choice", distractors="nearest", batch_size=4)]


@pytest.fixture(scope="module")
def service():
    from service.launcher import free_port, start_service

    with start_service(
        model_id="efficientnet-lite0",
        grpc_port=free_port(),
        config_overrides={"model": {"backend": "supervised"}},
    ) as process:
        yield process


@pytest.fixture(scope="module")
def remapper():
    from mapping import load_taxonomy

    from service.config import load_config

    config = load_config(environ={})
    return Remapper(load_taxonomy(config.mapping.taxonomy), config.mapping.encoder)


def run_remote(transport, remapper, path) -> dict[tuple[str, str], str | None]:
    try:
        with ResultStore(path) as store:
            summary = Runner(transport, remapper, store, progress=False).run(load_bundled(), SETTINGS)
    finally:
        transport.close()
    assert summary.errors == 0
    return {(row.setting, row.image_id): row for row in read_rows(path)}


def test_http_and_grpc_give_the_same_rows(service, remapper, tmp_path):
    http_rows = run_remote(HttpTransport(service.url), remapper, tmp_path / "http.jsonl")
    grpc_rows = run_remote(GrpcTransport(service.grpc_target), remapper, tmp_path / "grpc.jsonl")

    assert len(http_rows) == 20
    assert http_rows.keys() == grpc_rows.keys()
    for key, row in http_rows.items():
        assert row.status == grpc_rows[key].status, key
        assert row.prediction == grpc_rows[key].prediction, key
        assert row.options == grpc_rows[key].options, key

    open_key = SETTINGS[0].key
    assert http_rows[(open_key, "coffee")].prediction == "n07920052"
    assert http_rows[(open_key, "coffee")].timings["total_ms"] > 0
    choice_row = http_rows[(SETTINGS[1].key, "coffee")]
    assert choice_row.options is not None
    assert len(choice_row.options) == 5
    assert "n07920052" in choice_row.options
