"""The constrained and score protocols end to end in the Engine with the demo model on the bundled photos."""

from __future__ import annotations

import pytest

from service.schemas import ClassifyParams

TABBY, ESPRESSO, MISSILE, PROJECTILE = "n02123045", "n07920052", "n03773504", "n04008634"
# The demo model answers "missile", the name of two ImageNet classes.
EXPECTED = {"cat": {TABBY}, "coffee": {ESPRESSO}, "rocket": {MISSILE, PROJECTILE}}


@pytest.fixture(scope="module")
def engine(models_dir):
    from service.config import load_config
    from service.engine import Engine

    config = load_config(environ={})
    config = config.model_copy(update={"model": config.model.model_copy(update={"model_id": str(models_dir / "demo-llava")})})
    return Engine(config)


@pytest.mark.parametrize("top_k", [1, 3])
def test_constrained_maps_photos_to_classes(engine, photos, top_k):
    names = list(EXPECTED)
    results = engine.classify_batch([photos[name] for name in names], [ClassifyParams(protocol="constrained", top_k=top_k)] * 3)

    for name, result in zip(names, results, strict=True):
        assert result.labels[0].id in EXPECTED[name], f"{name}: {result.raw_answer!r} -> {result.labels[0]}"
        assert result.method == "constrained"
        assert result.protocol == "constrained"
        assert result.prompt_id == "constrained-v1"
        assert 1 <= len(result.labels) <= max(top_k, 2)
        assert result.labels[0].score > 0.5
        assert not result.out_of_list
    # Both "missile" classes come back for the rocket, and the answer is marked ambiguous.
    assert results[2].raw_answer == "missile"
    assert results[2].ambiguous


def test_constrained_with_candidate_subset(engine, photos):
    params = ClassifyParams(protocol="constrained", candidates=["tiger cat", "espresso", "tabby cat", "coffee mug", "crane"], top_k=2)

    results = engine.classify_batch([photos["cat"], photos["coffee"]], [params, params])

    allowed = set(engine.mapper().resolve_candidates(params.candidates))
    assert results[0].labels[0].id == TABBY
    assert results[1].labels[0].id == ESPRESSO
    for result in results:
        assert {label.id for label in result.labels} <= allowed


@pytest.mark.parametrize("name", ["cat", "coffee", "rocket"])
def test_score_ranks_right_class_among_hard_distractors(engine, photos, name):
    mapper = engine.mapper()
    right = sorted(EXPECTED[name])[0]
    distractors = [class_id for class_id in mapper.distractors(right, 5, "nearest") if class_id not in EXPECTED[name]]
    candidates = [right, *distractors]
    params = ClassifyParams(protocol="score", candidates=candidates, top_k=len(candidates))

    result = engine.classify_batch([photos[name]], [params])[0]

    assert result.method == "score"
    assert result.labels[0].id == right, f"{name}: {[(label.name, label.score) for label in result.labels]}"
    assert sum(option.score for option in result.options) == pytest.approx(1.0, abs=1e-4)
    assert sum(label.score for label in result.labels) == pytest.approx(1.0, abs=1e-4)
    assert [option.id for option in result.options] == candidates
    assert result.labels[0].score > result.labels[1].score


def test_score_with_tied_names_is_ambiguous(engine, photos):
    params = ClassifyParams(protocol="score", candidates=[MISSILE, PROJECTILE, TABBY], top_k=3)

    result = engine.classify_batch([photos["rocket"]], [params])[0]

    assert {label.id for label in result.labels[:2]} == {MISSILE, PROJECTILE}
    assert result.labels[0].score == pytest.approx(result.labels[1].score)
    assert result.ambiguous


def test_score_two_stage_uses_nearest_classes(engine, photos):
    params = ClassifyParams(protocol="score", num_options=6, top_k=3)

    result = engine.classify_batch([photos["coffee"]], [params])[0]

    assert result.first_answer == "espresso"
    assert len(result.options) == 6
    assert result.labels[0].id == ESPRESSO
    assert sum(option.score for option in result.options) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("protocol", ["constrained", "score"])
def test_evaluation_runner_runs_protocol(engine, protocol, tmp_path):
    from evaluation.datasets import load_bundled
    from evaluation.grid import Setting
    from evaluation.remap import Remapper
    from evaluation.runner import Runner
    from evaluation.store import ResultStore, read_rows
    from evaluation.transports import EngineTransport

    mapper = engine.mapper()
    remapper = Remapper(mapper.taxonomy, engine.config.mapping.encoder, default_mapper=mapper)
    path = tmp_path / "results.jsonl"
    with ResultStore(path) as store:
        Runner(EngineTransport(engine), remapper, store, progress=False).run(load_bundled(), [Setting(protocol=protocol, batch_size=4)])
    rows = {row.image_id: row for row in read_rows(path)}

    assert rows["coffee"].prediction == ESPRESSO
    assert rows["coffee"].method == protocol
    assert rows["chelsea"].prediction == TABBY
