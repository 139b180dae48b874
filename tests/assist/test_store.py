from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect

from service.assist.report import build_report
from service.assist.store import VERSION_TABLE, Store
from service.cli import main

from .history import EXPECTED, START, load_history, make_suggestion


def test_store_survives_restart(database_url: str) -> None:
    store = Store(database_url)
    store.migrate()
    suggestions = load_history(store)
    store.close()

    reopened = Store(database_url)
    reopened.migrate()
    try:
        assert reopened.count_suggestions() == len(suggestions)
        for original in suggestions:
            assert reopened.get_suggestion(original.id) == original

        updated = suggestions[3]
        history = reopened.decisions(updated.id)
        assert [decision.decision for decision in history] == ["entered", "accepted"]
        latest = reopened.latest_decision(updated.id)
        assert latest is not None
        assert latest.rank == 2
        assert reopened.latest_decision(suggestions[-1].id) is None
    finally:
        reopened.close()


def test_migrations_create_tables_once(database_url: str) -> None:
    store = Store(database_url)
    try:
        store.migrate()
        store.migrate()
        tables = set(inspect(store.engine).get_table_names())
        assert {"assist_suggestions", "assist_suggestion_labels", "assist_decisions", VERSION_TABLE} <= tables
    finally:
        store.close()


def test_decision_on_unknown_suggestion(database_url: str) -> None:
    store = Store(database_url)
    store.migrate()
    try:
        with pytest.raises(KeyError):
            store.add_decision("no-such-id", "accepted", rank=1, class_id=None, class_name=None, source="api")
    finally:
        store.close()


def test_latest_suggestion_by_image_ref(database_url: str) -> None:
    store = Store(database_url)
    store.migrate()
    try:
        older = make_suggestion(0.5, "cat", START)
        newer = make_suggestion(0.6, "dog", START.replace(minute=5))
        newer = newer.model_copy(update={"image_ref": older.image_ref, "task_id": "7"})
        store.add_suggestion(older)
        store.add_suggestion(newer)
        assert store.latest_suggestion(image_ref=older.image_ref) == newer
        assert store.latest_suggestion(task_id="7") == newer
        assert store.latest_suggestion(task_id="8") is None
    finally:
        store.close()


def test_report_matches_hand_computed(database_url: str) -> None:
    store = Store(database_url)
    store.migrate()
    try:
        load_history(store)
        report = build_report(store.history())
        report_75 = build_report(store.history(), target=0.75)
    finally:
        store.close()

    assert report.suggestions == EXPECTED["suggestions"]
    assert report.decided == EXPECTED["decided"]
    assert report.accepted_at_1 == EXPECTED["accepted_at_1"]
    assert report.accepted_at_k == EXPECTED["accepted_at_k"]
    assert report.entered == EXPECTED["entered"]
    assert report.rejected == EXPECTED["rejected"]
    assert report.acceptance_at_1 == pytest.approx(4 / 9)
    assert report.acceptance_at_k == pytest.approx(6 / 9)
    assert report.max_k == 3
    assert report.rank_counts == EXPECTED["rank_counts"]

    assert (report.threshold, report.threshold_count, report.threshold_acceptance) == pytest.approx(
        EXPECTED["threshold_95"]
    )
    assert (report_75.threshold, report_75.threshold_count, report_75.threshold_acceptance) == pytest.approx(
        EXPECTED["threshold_75"]
    )

    for index, bucket in enumerate(report.buckets):
        count, accepted = EXPECTED["buckets"].get(index, (0, 0))
        assert (bucket.count, bucket.accepted_at_1) == (count, accepted), f"bucket {index}"

    classes = {item.class_id: (item.count, item.acceptance_at_1, item.acceptance_at_k) for item in report.classes}
    assert classes.keys() == EXPECTED["classes"].keys()
    for class_id, expected in EXPECTED["classes"].items():
        assert classes[class_id] == pytest.approx(expected), class_id


def test_report_command_prints_figures(database_url: str) -> None:
    store = Store(database_url)
    store.migrate()
    try:
        load_history(store)
    finally:
        store.close()

    result = CliRunner().invoke(main, ["assist", "report", "--database-url", database_url])
    assert result.exit_code == 0, result.output
    assert "acceptance@1: 44.4% (4/9)" in result.output
    assert "acceptance@k: 66.7% (6/9, k <= 3)" in result.output
    assert "confidence >= 0.910 is accepted at rank 1 100.0% of the time (3 suggestions" in result.output
    assert "n02123045 tabby cat" in result.output


def test_report_of_empty_store(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    result = CliRunner().invoke(main, ["assist", "report", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "acceptance@1: n/a (0/0)" in result.output
    assert "no confidence threshold reaches 95.0%" in result.output


def test_concurrent_postgres_migrations(postgres_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from .conftest import _fresh_postgres_database

    url = _fresh_postgres_database(postgres_url, "concurrent_migrations")
    stores = [Store(url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            for future in [pool.submit(store.migrate) for store in stores]:
                future.result()
        assert stores[0].count_suggestions() == 0
    finally:
        for store in stores:
            store.close()
