"""The `map`, `taxonomy` and `bench mapping` commands, run in-process through click."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import main
from mapping_test_helpers import SHARED_CACHE_DIR


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> list[dict]:
    result = runner.invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]


def test_map_prints_one_object_per_answer(runner: CliRunner, mapper_1k: object) -> None:
    records = invoke(
        runner, "map", "--taxonomy", "imagenet-1k", "--top-k", "3", "--cache-dir", str(SHARED_CACHE_DIR),
        "a tabby cat", "two dogs and a cat", "I don't know",
    )

    assert [record["answer"] for record in records] == ["a tabby cat", "two dogs and a cat", "I don't know"]
    assert records[0]["labels"][0]["id"] == "n02123045"
    assert records[0]["method"] == "exact"
    assert len(records[1]["labels"]) == 3
    assert records[2]["abstain"] is True
    assert set(records[0]) == {"answer", "normalized", "labels", "method", "margin", "similarity", "out_of_list", "abstain", "ambiguous"}


def test_map_multilabel_and_options(runner: CliRunner, mapper_1k: object) -> None:
    cache = str(SHARED_CACHE_DIR)
    multilabel = invoke(runner, "map", "--multilabel", "--cache-dir", cache, "laptop, espresso")
    options = invoke(runner, "map", "--options", "n02127052,n02123045", "--cache-dir", cache, "B")

    assert [item["labels"][0]["id"] for item in multilabel[0]["objects"]] == ["n03642806", "n07920052"]
    assert options[0]["method"] == "option"
    assert options[0]["labels"][0]["id"] == "n02123045"


def test_map_rejects_unknown_candidate(runner: CliRunner, mapper_1k: object) -> None:
    result = runner.invoke(main, ["map", "--cache-dir", str(SHARED_CACHE_DIR), "--candidates", "goldfish,unicorn", "fish"])

    assert result.exit_code == 2
    assert "unknown candidate 'unicorn'" in result.output


def test_taxonomy_show(runner: CliRunner) -> None:
    records = invoke(runner, "taxonomy", "show", "imagenet-1k", "--class-id", "n02123045")

    assert records[0]["classes"] == 1000
    assert records[1]["name"] == "tabby cat"


def test_taxonomy_validate(runner: CliRunner, tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("id,name\ncat,cat\n", encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name\ncat,cat\ncat,dog\n", encoding="utf-8")

    result = runner.invoke(main, ["taxonomy", "validate", str(good), str(bad)])

    assert result.exit_code == 1
    assert f"OK {good}" in result.output
    assert "INVALID" in result.output
    assert "bad.csv:3: duplicate class id 'cat'" in result.output


def test_taxonomy_build_reports_cache(runner: CliRunner, tmp_path: Path) -> None:
    taxonomy = tmp_path / "pets.csv"
    taxonomy.write_text("id,name\ncat,cat\ndog,dog\n", encoding="utf-8")

    first = invoke(runner, "taxonomy", "build", str(taxonomy), "--cache-dir", str(tmp_path / "cache"))
    second = invoke(runner, "taxonomy", "build", str(taxonomy), "--cache-dir", str(tmp_path / "cache"))

    assert first[0]["status"] == "built"
    assert second[0]["status"] == "loaded"
    assert second[0]["vectors"] == 2


@pytest.mark.slow
def test_bench_mapping_prints_figures(runner: CliRunner) -> None:
    result = runner.invoke(
        main,
        ["bench", "mapping", "--skip-21k", "--name-answers", "2000", "--embedding-answers", "64", "--rounds", "1"],
        catch_exceptions=False,
    )

    assert result.exit_code == 0, result.output
    for figure in ("imagenet-1k cold build", "cached load", "name-match path", "embedding path / bare encoder"):
        assert figure in result.output
