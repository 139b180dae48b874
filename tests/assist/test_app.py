"""Routes of the /assist app on a real SQLite store, with a scripted classify."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from service.assist.app import build_assist_app
from service.assist.settings import AssistSettings
from service.assist.store import Store, close_stores
from service.errors import ServiceError

from .scripted import BLUE, GREEN, RED, WHITE, ScriptedClassify, ScriptedMapper


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "cat.png").write_bytes(RED)
    (folder / "cup.png").write_bytes(GREEN)
    (folder / "rocket.png").write_bytes(BLUE)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def settings(tmp_path: Path, images_dir: Path) -> AssistSettings:
    # The scripted classify answers open and choice prompts only.
    return AssistSettings(
        database_url=f"sqlite:///{tmp_path / 'assist.sqlite3'}", images_dir=images_dir, top_k=3, confirm_protocol="choice"
    )


def _client(classify: ScriptedClassify, settings: AssistSettings) -> TestClient:
    app = Starlette(routes=[Mount("/assist", build_assist_app(classify, classify.taxonomy, settings))])
    return TestClient(app)


@pytest.fixture
def client(settings: AssistSettings) -> Iterator[TestClient]:
    with _client(ScriptedClassify(), settings) as test_client:
        yield test_client
    close_stores()


def _suggest(client: TestClient, image: bytes, **form: str) -> dict:
    response = client.post("/assist/suggest", files={"image": ("upload.png", image, "image/png")}, data=form)
    assert response.status_code == 200, response.text
    return response.json()


def _metric(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_suggest_ranks_by_confidence(client: TestClient, settings: AssistSettings) -> None:
    before = _metric("mllm_classify_assist_suggestions_total", {"source": "api", "taxonomy": "assist-test"})
    body = _suggest(client, RED)

    assert [label["name"] for label in body["labels"]] == ["tabby cat", "tiger cat", "coffee mug"]
    confidences = [label["confidence"] for label in body["labels"]]
    assert confidences == sorted(confidences, reverse=True)
    assert confidences[0] > 0.9
    assert body["uncertainty"] == pytest.approx(1 - (confidences[0] - confidences[1]))
    assert body["confirmed"] is None
    assert body["image_ref"] == "upload.png"

    stored = Store(settings.database_url).get_suggestion(body["id"])
    assert stored is not None
    assert stored.model_dump(mode="json") == body
    after = _metric("mllm_classify_assist_suggestions_total", {"source": "api", "taxonomy": "assist-test"})
    assert after == before + 1


def test_exact_match_gets_neighbours(settings: AssistSettings) -> None:
    classify = ScriptedClassify()
    mapper = ScriptedMapper()
    app = Starlette(routes=[Mount("/assist", build_assist_app(classify, classify.taxonomy, settings, lambda _: mapper))])
    with TestClient(app) as client:
        body = _suggest(client, WHITE)
    close_stores()

    assert [label["name"] for label in body["labels"]] == ["espresso", "coffee mug", "tabby cat"]
    assert [label["score"] for label in body["labels"]] == [1.0, 0.71, 0.12]
    assert mapper.calls == [("espresso", 2, None, ["n07920052"])]
    assert body["labels"][0]["confidence"] > 0.99


def test_exact_match_without_mapper(client: TestClient) -> None:
    body = _suggest(client, WHITE)
    assert [label["name"] for label in body["labels"]] == ["espresso"]
    assert body["uncertainty"] == pytest.approx(0.0)


def test_close_scores_are_uncertain(client: TestClient) -> None:
    clear = _suggest(client, RED)
    close = _suggest(client, GREEN)
    assert close["uncertainty"] > clear["uncertainty"]
    assert close["labels"][0]["confidence"] < 0.7


def test_confirm_pass_reranks(settings: AssistSettings) -> None:
    classify = ScriptedClassify(choice_pick="n07920052")
    with _client(classify, settings) as client:
        body = _suggest(client, GREEN, confirm="true")
    close_stores()

    assert [call.protocol for call in classify.calls] == ["open", "choice"]
    choice_call = classify.calls[1]
    assert choice_call.candidates == ["n03063599", "n07920052", "n02123045"]
    assert body["labels"][0]["name"] == "espresso"
    assert body["confirmed"] is False
    assert body["labels"][0]["confidence"] > 0.5


def test_confirm_pass_abstaining_keeps_order(settings: AssistSettings) -> None:
    with _client(ScriptedClassify(choice_pick=None), settings) as client:
        plain = _suggest(client, GREEN, confirm="false")
        confirmed = _suggest(client, GREEN, confirm="true")
    close_stores()
    assert [label["id"] for label in confirmed["labels"]] == [label["id"] for label in plain["labels"]]
    assert confirmed["confirmed"] is False


def test_decisions_by_rank_label_and_reject(client: TestClient, settings: AssistSettings) -> None:
    cases = [
        ({"rank": 1}, "accepted", 1, "n02123045"),
        ({"label": "Tiger Cat"}, "accepted", 2, "n02123159"),
        ({"label": "n03063599"}, "accepted", 3, "n03063599"),
        ({"label": "tabby"}, "accepted", 1, "n02123045"),
        ({"label": "espresso"}, "entered", None, "n07920052"),
        ({"label": "a llama"}, "entered", None, None),
        ({"reject": True}, "rejected", None, None),
    ]
    for choice, kind, rank, class_id in cases:
        suggestion = _suggest(client, RED)
        before = _metric(
            "mllm_classify_assist_decisions_total",
            {"decision": kind, "rank": str(rank) if rank else "none", "source": "api"},
        )
        response = client.post("/assist/decisions", json={"suggestion_id": suggestion["id"], **choice})
        assert response.status_code == 201, (choice, response.text)
        decision = response.json()
        assert decision["decision"] == kind, choice
        assert decision["rank"] == rank, choice
        assert decision["class_id"] == class_id, choice
        after = _metric(
            "mllm_classify_assist_decisions_total",
            {"decision": kind, "rank": str(rank) if rank else "none", "source": "api"},
        )
        assert after == before + 1, choice

        stored = Store(settings.database_url).latest_decision(suggestion["id"])
        assert stored is not None
        assert stored.model_dump(mode="json") == decision


def test_invalid_decisions(client: TestClient) -> None:
    suggestion = _suggest(client, RED)
    two_choices = client.post("/assist/decisions", json={"suggestion_id": suggestion["id"], "rank": 1, "reject": True})
    assert two_choices.status_code == 400
    assert "exactly one" in two_choices.json()["error"]

    past_last = client.post("/assist/decisions", json={"suggestion_id": suggestion["id"], "rank": 4})
    assert past_last.status_code == 400
    assert past_last.json()["field"] == "rank"

    unknown = client.post("/assist/decisions", json={"suggestion_id": "missing", "rank": 1})
    assert unknown.status_code == 404

    not_json = client.post("/assist/decisions", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400


def test_suggest_rejects_bad_form(client: TestClient) -> None:
    missing = client.post("/assist/suggest", data={"top_k": "3"})
    assert missing.status_code == 400
    assert missing.json()["field"] == "image"

    bad_top_k = client.post("/assist/suggest", files={"image": ("a.png", RED, "image/png")}, data={"top_k": "99"})
    assert bad_top_k.status_code == 400
    assert bad_top_k.json()["field"] == "top_k"


def test_classify_errors_pass_through(settings: AssistSettings) -> None:
    class FailingClassify(ScriptedClassify):
        async def __call__(self, image, params):
            raise ServiceError(503, "backend_error", "the model failed", None, "req-1")

    with _client(FailingClassify(), settings) as client:
        response = client.post("/assist/suggest", files={"image": ("a.png", RED, "image/png")})
    close_stores()
    assert response.status_code == 503
    assert response.json() == {"error": "the model failed", "field": None, "request_id": "req-1"}


def test_label_autocomplete(client: TestClient) -> None:
    response = client.get("/assist/labels", params={"q": "cat"})
    assert response.status_code == 200
    names = [option["name"] for option in response.json()["labels"]]
    assert names == ["tabby cat", "tiger cat"]

    prefix = client.get("/assist/labels", params={"q": "esp"}).json()["labels"]
    assert prefix == [{"id": "n07920052", "name": "espresso"}]

    synonym = client.get("/assist/labels", params={"q": "tabb"}).json()["labels"]
    assert synonym[0]["id"] == "n02123045"

    assert client.get("/assist/labels", params={"q": ""}).json()["labels"] == []
    assert client.get("/assist/labels", params={"q": "cat", "limit": "0"}).status_code == 400
    assert client.get("/assist/labels", params={"q": "cat", "taxonomy": "other"}).status_code == 400


def test_queue_orders_hardest_first(client: TestClient) -> None:
    queue = client.get("/assist/queue").json()
    assert [item["name"] for item in queue["items"]] == ["cat.png", "cup.png", "rocket.png"]
    assert queue["total"] == 3

    for name in ("cat.png", "cup.png", "rocket.png"):
        response = client.post(f"/assist/queue/{name}/suggest")
        assert response.status_code == 200, response.text
        assert response.json()["source"] == "review"

    reused = client.post("/assist/queue/cat.png/suggest").json()
    queue = client.get("/assist/queue").json()
    by_name = {item["name"]: item for item in queue["items"]}
    assert by_name["cat.png"]["suggestion"]["id"] == reused["id"]
    uncertainties = [item["suggestion"]["uncertainty"] for item in queue["items"]]
    assert uncertainties == sorted(uncertainties, reverse=True)
    assert queue["items"][-1]["name"] == "cat.png"

    hardest = queue["items"][0]
    decision = client.post("/assist/decisions", json={"suggestion_id": hardest["suggestion"]["id"], "rank": 1}).json()
    assert decision["source"] == "review"
    queue = client.get("/assist/queue").json()
    assert queue["decided"] == 1
    assert queue["items"][-1]["name"] == hardest["name"]


def test_folder_images_stay_inside(client: TestClient) -> None:
    assert client.get("/assist/images/cat.png").content == RED
    assert client.get("/assist/images/..%2Fassist.sqlite3").status_code == 404
    assert client.get("/assist/images/missing.png").status_code == 404
    assert client.post("/assist/queue/..%2Fassist.sqlite3/suggest").status_code == 404


def test_review_page_uses_mount_path(client: TestClient) -> None:
    page = client.get("/assist/")
    assert page.status_code == 200
    assert '<meta name="assist-base" content="/assist/">' in page.text
    assert 'src="/assist/static/review.js"' in page.text
    script = client.get("/assist/static/review.js")
    assert script.status_code == 200
    assert "decisions" in script.text


def test_report_endpoint(client: TestClient) -> None:
    suggestion = _suggest(client, RED)
    client.post("/assist/decisions", json={"suggestion_id": suggestion["id"], "rank": 1})
    _suggest(client, GREEN)
    report = client.get("/assist/report").json()
    assert report["suggestions"] == 2
    assert report["decided"] == 1
    assert report["acceptance_at_1"] == 1.0
    assert client.get("/assist/report", params={"target": "2"}).status_code == 400
