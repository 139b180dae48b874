"""Scoring on crafted result rows, with exact expected numbers."""

from __future__ import annotations

import pytest

from evaluation.grid import Setting
from evaluation.scoring import accuracy, score_rows
from evaluation.store import ResultRow, ResultStore, read_rows

CAT, TIGER_CAT, DOG, ESPRESSO, CUP, MISSILE = "n02123045", "n02123159", "n02085620", "n07920052", "n07930864", "n03773504"


def row(setting: str, image: str, labels: list[str], prediction: str | None, **fields) -> ResultRow:
    label = fields.pop("label", labels[0] if labels else None)
    return ResultRow(setting=setting, image_id=image, labels=labels, label=label, prediction=prediction, **fields)


def by_setting(scores):
    return {score.setting: score for score in scores.settings}


def test_discarding_out_of_list_raises_accuracy():
    rows = [
        row("protocol=open", "a", [CAT], CAT),
        row("protocol=open", "b", [ESPRESSO], ESPRESSO),
        row("protocol=open", "c", [MISSILE], DOG),
        row("protocol=open", "d", [DOG], None, out_of_list=True, raw_answer="a fluffy thing"),
    ]
    score = by_setting(score_rows(rows))["protocol=open"]

    assert score.multilabel.correct == 2
    assert score.multilabel.total == 4
    assert score.multilabel.value == pytest.approx(0.5)
    assert score.multilabel_discard_out_of_list.total == 3
    assert score.multilabel_discard_out_of_list.value == pytest.approx(2 / 3)
    assert score.out_of_list_rate == pytest.approx(0.25)
    assert score.multilabel_discard_out_of_list.value > score.multilabel.value


def test_abstention_counts_as_out_of_list():
    rows = [
        row("protocol=open", "a", [CAT], CAT),
        row("protocol=open", "b", [DOG], None, abstain=True, raw_answer="I cannot tell"),
    ]
    score = by_setting(score_rows(rows))["protocol=open"]

    assert score.multilabel.value == pytest.approx(0.5)
    assert score.multilabel_discard_out_of_list.value == pytest.approx(1.0)
    assert score.abstain_rate == pytest.approx(0.5)
    assert score.out_of_list_rate == pytest.approx(0.5)


def test_multilabel_scores_above_single_label():
    # Same predictions; the tiger cat and cup answers are in the label set but not the original label.
    rows = [
        row("protocol=open", "cat", [CAT, TIGER_CAT], TIGER_CAT, label=CAT),
        row("protocol=open", "coffee", [ESPRESSO, CUP], CUP, label=ESPRESSO),
        row("protocol=open", "rocket", [MISSILE], MISSILE, label=MISSILE),
        row("protocol=open", "dog", [DOG], CAT, label=DOG),
    ]
    score = by_setting(score_rows(rows))["protocol=open"]

    assert score.single_label.value == pytest.approx(0.25)
    assert score.multilabel.value == pytest.approx(0.75)
    assert score.multilabel.value > score.single_label.value


def test_dropped_images_are_counted_not_scored():
    rows = [
        row("protocol=open", "a", [CAT], CAT),
        row("protocol=open", "b", [DOG], CAT),
        ResultRow(setting="protocol=open", image_id="c", labels=[], status="dropped"),
        # An image with an original label but no valid multilabel: dropped from
        # the multilabel figures, still scored under its single label.
        row("protocol=open", "d", [], DOG, label=DOG),
    ]
    score = by_setting(score_rows(rows))["protocol=open"]

    assert score.rows == 4
    assert score.dropped == 2
    assert score.multilabel.total == 2
    assert score.multilabel.value == pytest.approx(0.5)
    assert score.single_label.total == 3
    assert score.single_label.value == pytest.approx(2 / 3)


def test_error_rows_are_counted_and_excluded():
    rows = [
        row("protocol=open", "a", [CAT], CAT),
        ResultRow(setting="protocol=open", image_id="b", labels=[DOG], status="error", error="TimeoutError: read timed out"),
    ]
    score = by_setting(score_rows(rows))["protocol=open"]

    assert score.errors == 1
    assert score.multilabel.total == 1
    assert score.multilabel.value == pytest.approx(1.0)


def test_random_distractors_compared_with_hard():
    random_key = Setting(protocol="choice", distractors="random").key
    nearest_key = Setting(protocol="choice", distractors="nearest").key
    confusion_key = Setting(protocol="choice", distractors="confusion").key
    rows = []
    for index in range(4):
        rows.append(row(random_key, f"i{index}", [CAT], CAT))
        rows.append(row(nearest_key, f"i{index}", [CAT], CAT if index < 2 else TIGER_CAT))
        rows.append(row(confusion_key, f"i{index}", [CAT], CAT if index < 1 else TIGER_CAT))
    scores = score_rows(rows)

    (comparison,) = [item for item in scores.comparisons if item.title.startswith("Multiple choice")]
    assert [item.variant for item in comparison.rows] == ["random", "nearest", "confusion"]
    assert [item.multilabel for item in comparison.rows] == pytest.approx([1.0, 0.5, 0.25])
    assert [item.delta_vs_first for item in comparison.rows] == pytest.approx([0.0, -0.5, -0.75])


def test_mapping_and_encoder_comparison():
    exact = Setting(mapping="exact").key
    minilm = Setting(mapping="embedding", encoder="all-MiniLM-L6-v2").key
    mpnet = Setting(mapping="embedding", encoder="all-mpnet-base-v2").key
    rows = [
        row(exact, "a", [CAT], CAT),
        row(exact, "b", [ESPRESSO], None, out_of_list=True),
        row(minilm, "a", [CAT], CAT),
        row(minilm, "b", [ESPRESSO], ESPRESSO),
        row(mpnet, "a", [CAT], TIGER_CAT),
        row(mpnet, "b", [ESPRESSO], ESPRESSO),
    ]
    scores = score_rows(rows)

    (comparison,) = [item for item in scores.comparisons if item.title.startswith("Answer mapping")]
    assert [item.variant for item in comparison.rows] == [
        "exact",
        "embedding (all-MiniLM-L6-v2)",
        "embedding (all-mpnet-base-v2)",
    ]
    assert [item.multilabel for item in comparison.rows] == pytest.approx([0.5, 1.0, 0.5])
    assert comparison.rows[0].out_of_list_rate == pytest.approx(0.5)


def test_batch_size_and_order_agreement():
    base = Setting().key
    batch_one = Setting(batch_size=1).key
    shuffled = Setting(order_seed=3).key
    predictions = {
        base: [CAT, DOG, ESPRESSO, MISSILE],
        batch_one: [CAT, DOG, ESPRESSO, CUP],
        shuffled: [CAT, TIGER_CAT, CUP, CUP],
    }
    labels = [[CAT], [DOG], [ESPRESSO], [MISSILE]]
    rows = [
        row(key, f"i{index}", labels[index], prediction, batch_size=8 if key != batch_one else 1)
        for key, values in predictions.items()
        for index, prediction in enumerate(values)
    ]
    scores = score_rows(rows)

    (group,) = scores.replicates
    assert group.reference == base
    deltas = {item.setting: item.delta_vs_reference for item in group.rows}
    agreement = {item.setting: item.agreement_with_reference for item in group.rows}
    assert deltas == pytest.approx({base: 0.0, batch_one: -0.25, shuffled: -0.75})
    assert agreement == pytest.approx({base: 1.0, batch_one: 0.75, shuffled: 0.25})
    # Pairs: base/batch-one 3 of 4, base/shuffled 1 of 4, batch-one/shuffled 2 of 4.
    assert group.mean_pairwise_agreement == pytest.approx((0.75 + 0.25 + 0.5) / 3)
    assert group.accuracy_range == pytest.approx(0.75)


def test_multilabel_protocol_any_object():
    key = Setting(protocol="multilabel").key
    rows = [
        row(key, "a", [CUP, ESPRESSO], DOG, objects=[DOG, CUP]),
        row(key, "b", [CAT], CAT, objects=[CAT]),
        row(key, "c", [MISSILE], DOG, objects=[DOG, None]),
    ]
    score = by_setting(score_rows(rows))[key]

    assert score.multilabel.value == pytest.approx(1 / 3)
    assert score.any_object_correct is not None
    assert score.any_object_correct.value == pytest.approx(2 / 3)


def test_throughput_from_batch_wall_time():
    rows = [
        row("protocol=open", f"i{index}", [CAT], CAT, batch_ms=400.0, batch_size=4, timings={"total_ms": 400.0})
        for index in range(4)
    ]
    score = by_setting(score_rows(rows))["protocol=open"]

    assert score.images_per_second == pytest.approx(10.0)
    assert score.mean_latency_ms == pytest.approx(400.0)
    assert score.batch_size == 4


def test_wilson_interval():
    result = accuracy(8, 10)
    assert result.value == pytest.approx(0.8)
    assert result.low == pytest.approx(0.4902, abs=1e-4)
    assert result.high == pytest.approx(0.9433, abs=1e-4)
    assert accuracy(0, 0).value is None


def test_scores_recomputed_from_jsonl(tmp_path):
    path = tmp_path / "results.jsonl"
    rows = [
        row("protocol=open", "a", [CAT, TIGER_CAT], TIGER_CAT, label=CAT),
        row("protocol=open", "b", [DOG], None, out_of_list=True),
    ]
    with ResultStore(path) as store:
        store.append(rows)

    score = by_setting(score_rows(read_rows(path)))["protocol=open"]
    assert score.single_label.value == pytest.approx(0.0)
    assert score.multilabel.value == pytest.approx(0.5)
    assert score.multilabel_discard_out_of_list.value == pytest.approx(1.0)


def test_models_scored_side_by_side():
    rows = [
        row("protocol=open", "a", [CAT], CAT, model="demo-llava"),
        row("protocol=open", "b", [DOG], None, out_of_list=True, model="demo-llava"),
        row("protocol=open", "a", [CAT], CAT, model="efficientnet-lite0"),
        row("protocol=open", "b", [DOG], DOG, model="efficientnet-lite0"),
    ]
    scores = score_rows(rows)

    assert [score.setting for score in scores.settings] == [
        "demo-llava | protocol=open",
        "efficientnet-lite0 | protocol=open",
    ]
    (comparison,) = [item for item in scores.comparisons if item.title.startswith("Models")]
    assert [item.variant for item in comparison.rows] == ["demo-llava", "efficientnet-lite0"]
    assert [item.delta_vs_first for item in comparison.rows] == pytest.approx([0.0, 0.5])


def test_scoring_50k_images_streams(tmp_path):
    import tracemalloc

    path = tmp_path / "results.jsonl"
    labels = [CAT, TIGER_CAT, DOG, ESPRESSO]
    with ResultStore(path) as store:
        for start in range(0, 50_000, 5_000):
            store.append(
                row(setting, f"ILSVRC2012_val_{index + 1:08d}.JPEG", [labels[index % 4]], labels[(index * 7) % 4])
                for index in range(start, start + 5_000)
                for setting in ("protocol=open", "protocol=open,order_seed=1")
            )

    tracemalloc.start()
    scores = score_rows(read_rows(path))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    score = by_setting(scores)["protocol=open"]
    assert score.multilabel.total == 50_000
    # 7 * index and index agree modulo 4 exactly when index is even.
    assert score.multilabel.value == pytest.approx(0.5)
    (group,) = scores.replicates
    assert group.mean_pairwise_agreement == pytest.approx(1.0)
    # The rows file is about 40 MB; scoring keeps only one prediction per image and setting.
    assert peak < 40 * 1024 * 1024


def test_markdown_escapes_model_separator():
    from evaluation.report import Report, render_markdown

    rows = [
        row("protocol=open", "a", [CAT], CAT, model="demo-llava"),
        row("protocol=open", "a", [CAT], DOG, model="efficientnet-lite0"),
    ]
    text = render_markdown(Report(runs=[], scores=score_rows(rows)), plots=[])

    assert "| demo-llava \\| protocol=open | 1 | 0 |" in text
