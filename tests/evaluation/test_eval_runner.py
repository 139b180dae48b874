"""The runner end to end with the real supervised baseline, in-process, on the bundled photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from evaluation.datasets import load_bundled
from evaluation.grid import Setting
from evaluation.remap import Remapper, exact_map
from evaluation.runner import Runner
from evaluation.scoring import score_rows
from evaluation.store import ResultStore, read_rows
from evaluation.transports import EngineTransport

ESPRESSO = "n07920052"
TABBY, TIGER_CAT = "n02123045", "n02123159"


@pytest.fixture(scope="module")
def engine():
    from service.backends.supervised_backend import SupervisedBackend
    from service.config import load_config
    from service.engine import Engine

    config = load_config(environ={})
    config = config.model_copy(
        update={"model": config.model.model_copy(update={"backend": "supervised", "model_id": "efficientnet-lite0"})}
    )
    return Engine(config, backend=SupervisedBackend(config.model))


@pytest.fixture(scope="module")
def remapper(engine):
    mapper = engine.mapper()
    return Remapper(mapper.taxonomy, engine.config.mapping.encoder, default_mapper=mapper)


def run_settings(engine, remapper, path: Path, settings: list[Setting]) -> int:
    with ResultStore(path) as store:
        runner = Runner(EngineTransport(engine), remapper, store, progress=False)
        return runner.run(load_bundled(), settings).written


def test_supervised_baseline_on_bundled_photos(engine, remapper, tmp_path):
    path = tmp_path / "results.jsonl"
    written = run_settings(engine, remapper, path, [Setting(batch_size=4)])
    rows = {row.image_id: row for row in read_rows(path)}

    assert written == 10
    assert rows["coffee"].prediction == ESPRESSO
    assert rows["coffee"].raw_answer == "espresso"
    assert rows["coffee"].method == "supervised"
    assert rows["chelsea"].prediction in {TABBY, TIGER_CAT}
    assert rows["present"].status == "dropped"
    assert rows["hubble_deep_field"].status == "dropped"
    assert all(row.model == "efficientnet-lite0" for row in rows.values())
    assert rows["coffee"].batch_size == 4


def test_runner_resumes_without_duplicates(engine, remapper, tmp_path):
    path = tmp_path / "results.jsonl"
    settings = [Setting(batch_size=8), Setting(batch_size=8, mapping="exact")]
    assert run_settings(engine, remapper, path, settings) == 20

    # Simulate an interrupted run: keep the first 7 rows and a torn eighth line.
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:7]) + lines[7][:25], encoding="utf-8")

    assert run_settings(engine, remapper, path, settings) == 13
    rows = list(read_rows(path))
    assert len(rows) == 20
    assert len({(row.setting, row.image_id) for row in rows}) == 20
    assert run_settings(engine, remapper, path, settings) == 0


def test_exact_mapping_rows_share_one_model_call(engine, remapper, tmp_path):
    path = tmp_path / "results.jsonl"
    service_setting = Setting(batch_size=8)
    exact_setting = Setting(batch_size=8, mapping="exact")
    run_settings(engine, remapper, path, [service_setting, exact_setting])
    rows = list(read_rows(path))

    service_rows = {row.image_id: row for row in rows if row.setting == service_setting.key}
    exact_rows = {row.image_id: row for row in rows if row.setting == exact_setting.key}
    for image_id, row in exact_rows.items():
        assert row.raw_answer == service_rows[image_id].raw_answer
        assert row.batch_ms == service_rows[image_id].batch_ms
    assert exact_rows["coffee"].method == "exact"
    assert exact_rows["coffee"].prediction == ESPRESSO


def test_choice_candidates_hold_truth_not_other_labels(engine, remapper, tmp_path):
    dataset = load_bundled()
    runner = Runner(EngineTransport(engine), remapper, ResultStore(tmp_path / "results.jsonl"), progress=False)
    for method in ("random", "nearest", "confusion"):
        setting = Setting(protocol="choice", distractors=method, num_options=5)
        for sample in dataset:
            if not sample.labels:
                continue
            options = runner.candidates_for(setting, sample)
            assert options is not None
            assert len(options) == 5, (method, sample.id)
            assert len(set(options)) == 5
            assert sample.labels[0] in options
            assert not set(sample.labels[1:]) & set(options)
            assert runner.candidates_for(setting, sample) == options


def test_closed_candidates_include_truth(engine, remapper, tmp_path):
    dataset = load_bundled()
    runner = Runner(EngineTransport(engine), remapper, ResultStore(tmp_path / "results.jsonl"), progress=False)
    setting = Setting(protocol="closed", closed_candidates=10)
    options = runner.candidates_for(setting, dataset[1])

    assert len(options) == 10
    assert ESPRESSO in options


def test_exact_map_rules(remapper):
    taxonomy = remapper.taxonomy

    assert exact_map(taxonomy, "Espresso.").prediction == ESPRESSO
    assert exact_map(taxonomy, "a cup of espresso").out_of_list
    assert exact_map(taxonomy, "I'm not sure").abstain
    crane = exact_map(taxonomy, "crane")
    assert crane.ambiguous
    assert len(crane.predictions) == 2
    assert exact_map(taxonomy, "espresso", candidates=["n07930864"]).out_of_list


@pytest.mark.slow
def test_evaluate_command_writes_report(tmp_path):
    from service.cli import main

    grid = tmp_path / "grid.yaml"
    grid.write_text("base: {protocol: open, batch_size: 4}\nvary:\n  batch_size: [1, 8]\n  mapping: [exact]\n", encoding="utf-8")
    out = tmp_path / "report"
    result = CliRunner().invoke(
        main,
        ["evaluate", "--dataset", "bundled", "--backend", "supervised", "--grid", str(grid), "--out", str(out), "--no-progress"],
        catch_exceptions=False,
    )

    assert result.exit_code == 0, result.output
    for name in ("results.jsonl", "report.json", "report.md", "accuracy_by_setting.png", "batch_size.png", "runs.json"):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    settings = {item["setting"]: item for item in report["scores"]["settings"]}
    assert set(settings) == {
        "protocol=open,batch_size=4",
        "protocol=open,batch_size=1",
        "protocol=open",
        "protocol=open,mapping=exact,batch_size=4",
    }
    assert settings["protocol=open,batch_size=4"]["dropped"] == 2
    assert settings["protocol=open,batch_size=4"]["multilabel"]["total"] == 8
    assert report["runs"][0]["model"] == "efficientnet-lite0"
    assert "| protocol=open,batch_size=4 |" in (out / "report.md").read_text(encoding="utf-8")

    # Rescoring from the rows alone gives the same figures as the report.
    rescored = score_rows(read_rows(out / "results.jsonl"))
    assert {score.setting: score.multilabel.value for score in rescored.settings} == {
        key: value["multilabel"]["value"] for key, value in settings.items()
    }


@pytest.mark.slow
def test_demo_mllm_on_bundled_photos(models_dir, tmp_path):
    from service.config import load_config
    from service.engine import Engine

    config = load_config(environ={})
    model = config.model.model_copy(update={"backend": "transformers", "model_id": str(models_dir / "demo-llava")})
    engine = Engine(config.model_copy(update={"model": model}))
    mapper = engine.mapper()
    remapper = Remapper(mapper.taxonomy, config.mapping.encoder, default_mapper=mapper)

    path = tmp_path / "results.jsonl"
    settings = [Setting(batch_size=4), Setting(batch_size=4, mapping="exact")]
    assert run_settings(engine, remapper, path, settings) == 20
    rows = {row.image_id: row for row in read_rows(path) if row.setting == settings[0].key}

    # The demo model is trained to name these three photos.
    assert rows["chelsea"].prediction == TABBY
    assert rows["coffee"].prediction == ESPRESSO
    assert rows["rocket"].prediction in {"n03773504", "n04008634"}
    assert all(row.model.endswith("demo-llava") for row in rows.values())
    scores = {score.setting: score for score in score_rows(read_rows(path)).settings}
    assert scores[settings[0].key].multilabel.correct >= 3
