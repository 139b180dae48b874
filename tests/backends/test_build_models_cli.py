"""`mllm-classify build-models` builds, reports and skips models."""

from __future__ import annotations

from click.testing import CliRunner

from service.cli import main
from service.models.build import MANIFEST_NAME


def test_build_models_cli_builds_then_skips(tmp_path):
    runner = CliRunner()
    arguments = ["build-models", "--out", str(tmp_path), "--only", "tiny-llava"]

    first = runner.invoke(main, arguments)

    assert first.exit_code == 0, first.output
    assert "built    tiny-llava" in first.output
    assert "M params" in first.output
    assert (tmp_path / "tiny-llava" / MANIFEST_NAME).is_file()
    assert not (tmp_path / "tiny-idefics3").exists()

    second = runner.invoke(main, arguments)

    assert second.exit_code == 0, second.output
    assert "skipped  tiny-llava" in second.output


def test_build_models_cli_rejects_unknown_name(tmp_path):
    result = CliRunner().invoke(main, ["build-models", "--out", str(tmp_path), "--only", "huge-llava"])

    assert result.exit_code == 2
    assert "huge-llava" in result.output
