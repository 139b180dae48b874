"""Label Studio ML backend API on a real SQLite store, with a scripted classify."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from service.assist.labelstudio import LabelConfigError, parse_label_config
from service.assist.labelstudio_app import build_labelstudio_app
from service.assist.settings import AssistSettings
from service.assist.store import Store, close_stores

from .labelstudio_payloads import CHOICE_VALUES, LABEL_CONFIG, data_uri, predict_body, webhook_body
from .scripted import BLUE, GREEN, RED, ScriptedClassify

SCHEMA = json.loads((Path(__file__).parent / "data" / "labelstudio_predict_response.schema.json").read_text())
TOKEN = "test-token-123"


@pytest.fixture
def settings(tmp_path: Path) -> AssistSettings:
    return AssistSettings(database_url=f"sqlite:///{tmp_path / 'assist.sqlite3'}", top_k=3)


@pytest.fixture
def classify() -> ScriptedClassify:
    return ScriptedClassify()


@pytest.fixture
def client(classify: ScriptedClassify, settings: AssistSettings) -> Iterator[TestClient]:
    app = Starlette(routes=[Mount("/labelstudio", build_labelstudio_app(classify, classify.taxonomy, settings))])
    with TestClient(app) as test_client:
        yield test_client
    close_stores()


def _check_predictions(body: dict, num_tasks: int) -> None:
    jsonschema.validate(body, SCHEMA)
    assert len(body["results"]) == num_tasks
    for prediction in body["results"]:
        for region in prediction["result"]:
            assert region["from_name"] == "class"
            assert region["to_name"] == "image"
            # Label Studio rejects a choice that is not a Choice value of the config.
            assert set(region["value"]["choices"]) <= set(CHOICE_VALUES)


def test_parse_label_config() -> None:
    control = parse_label_config(LABEL_CONFIG)
    assert (control.from_name, control.to_name, control.data_key) == ("class", "image", "image")
    assert control.choices == CHOICE_VALUES
    assert control.multiple is False

    with pytest.raises(LabelConfigError):
        parse_label_config('<View><Text name="t" value="$text"/><Choices name="c" toName="t"/></View>')
    with pytest.raises(LabelConfigError):
        parse_label_config("<View>")


def test_health_and_setup(client: TestClient) -> None:
    health = client.get("/labelstudio/health")
    assert health.status_code == 200
    assert health.json()["status"] == "UP"

    setup = client.post("/labelstudio/setup", json={"project": "3.1764800000", "schema": LABEL_CONFIG})
    assert setup.status_code == 200
    assert setup.json()["model_version"]

    bad = client.post("/labelstudio/setup", json={"project": "3.1", "schema": "<View><Text name='x'/></View>"})
    assert bad.status_code == 400


def test_predict_matches_result_schema(client: TestClient, classify: ScriptedClassify, settings: AssistSettings) -> None:
    tasks = [{"id": 41, "data": {"image": data_uri(RED)}}, {"id": 42, "data": {"image": data_uri(BLUE)}}]
    response = client.post("/labelstudio/predict", json=predict_body(tasks))
    assert response.status_code == 200, response.text
    body = response.json()
    _check_predictions(body, 2)

    first, second = body["results"]
    assert first["result"][0]["value"]["choices"] == ["tabby cat"]
    assert second["result"][0]["value"]["choices"] == ["missile"]
    assert first["score"] == pytest.approx(first["result"][0]["score"])
    assert first["model_version"] == "scripted"

    # The project's Choice values that name classes become the candidates.
    assert classify.calls[0].candidates == ["n02123045", "n02123159", "n07920052", "n03773504"]

    store = Store(settings.database_url)
    stored = store.latest_suggestion(task_id="41")
    assert stored is not None
    assert stored.source == "labelstudio"
    assert stored.project_id == "3"


def test_predict_uses_config_spelling(client: TestClient) -> None:
    # GREEN's top class, coffee mug, is no Choice, so espresso comes first,
    # and the prediction must use the config's spelling "Espresso".
    config = LABEL_CONFIG.replace('"espresso"', '"Espresso"')
    tasks = [{"id": 7, "data": {"image": data_uri(GREEN)}}]
    body = client.post("/labelstudio/predict", json=predict_body(tasks, config)).json()
    jsonschema.validate(body, SCHEMA)
    assert body["results"][0]["result"][0]["value"]["choices"] == ["Espresso"]


def test_predict_rejects_bad_tasks(client: TestClient) -> None:
    no_image = client.post("/labelstudio/predict", json=predict_body([{"id": 1, "data": {"text": "hi"}}]))
    assert no_image.status_code == 400
    assert "data.image" in no_image.json()["error"]

    server_path = client.post("/labelstudio/predict", json=predict_body([{"id": 2, "data": {"image": "/data/upload/x.png"}}]))
    assert server_path.status_code == 400
    assert "LABEL_STUDIO_URL" in server_path.json()["error"]

    no_choices = client.post("/labelstudio/predict", json=predict_body([], "<View><Image name='i' value='$image'/></View>"))
    assert no_choices.status_code == 400


@pytest.mark.parametrize(
    ("choice", "cancelled", "kind", "rank"),
    [
        ("tabby cat", False, "accepted", 1),
        ("Tiger Cat", False, "accepted", 2),
        ("espresso", False, "entered", None),
        ("Something else", False, "entered", None),
        (None, True, "rejected", None),
    ],
)
def test_webhook_records_decision(client: TestClient, settings: AssistSettings, choice: str | None,
                                  cancelled: bool, kind: str, rank: int | None) -> None:
    client.post("/labelstudio/predict", json=predict_body([{"id": 5, "data": {"image": data_uri(RED)}}]))

    response = client.post("/labelstudio/webhook", json=webhook_body("ANNOTATION_CREATED", 5, choice, was_cancelled=cancelled))
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "ok"

    suggestion = Store(settings.database_url).latest_suggestion(task_id="5")
    assert suggestion is not None
    decision = Store(settings.database_url).latest_decision(suggestion.id)
    assert decision is not None
    assert decision.decision == kind
    assert decision.rank == rank
    assert decision.source == "labelstudio"
    assert decision.external_id == "11"
    assert decision.annotator == "1"


def test_webhook_update_replaces_decision(client: TestClient, settings: AssistSettings) -> None:
    client.post("/labelstudio/predict", json=predict_body([{"id": 9, "data": {"image": data_uri(RED)}}]))
    client.post("/labelstudio/webhook", json=webhook_body("ANNOTATION_CREATED", 9, "espresso"))
    client.post("/labelstudio/webhook", json=webhook_body("ANNOTATION_UPDATED", 9, "tabby cat"))

    store = Store(settings.database_url)
    suggestion = store.latest_suggestion(task_id="9")
    assert suggestion is not None
    assert [decision.decision for decision in store.decisions(suggestion.id)] == ["entered", "accepted"]
    history = {row.suggestion_id: row for row in store.history()}
    assert history[suggestion.id].decision == "accepted"


def test_webhook_ignores_other_events(client: TestClient) -> None:
    unknown = client.post("/labelstudio/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 3}})
    assert unknown.status_code == 200
    assert unknown.json()["status"] == "Unknown event"

    no_prediction = client.post("/labelstudio/webhook", json=webhook_body("ANNOTATION_CREATED", 999, "tabby cat"))
    assert no_prediction.status_code == 200
    assert no_prediction.json()["status"] == "ignored"

    invalid = client.post("/labelstudio/webhook", json={"action": "ANNOTATION_CREATED", "annotation": {}})
    assert invalid.status_code == 400


class _UploadHandler(BaseHTTPRequestHandler):
    """Serves RED at /data/upload/3/cat.png to requests carrying the access token."""

    seen_authorization: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's method name)
        self.seen_authorization.append(self.headers.get("Authorization"))
        if self.path != "/data/upload/3/cat.png" or self.headers.get("Authorization") != f"Token {TOKEN}":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(RED)))
        self.end_headers()
        self.wfile.write(RED)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def upload_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _UploadHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_predict_fetches_uploads_with_token(tmp_path: Path, upload_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    settings = AssistSettings(database_url=f"sqlite:///{tmp_path / 'a.sqlite3'}", label_studio_url=upload_server)
    classify = ScriptedClassify()
    app = Starlette(routes=[Mount("/labelstudio", build_labelstudio_app(classify, classify.taxonomy, settings))])
    with TestClient(app) as client:
        by_path = client.post("/labelstudio/predict",
                              json=predict_body([{"id": 1, "data": {"image": "/data/upload/3/cat.png"}}]))
        by_url = client.post("/labelstudio/predict",
                             json=predict_body([{"id": 2, "data": {"image": upload_server + "/data/upload/3/cat.png"}}]))
        missing = client.post("/labelstudio/predict",
                              json=predict_body([{"id": 3, "data": {"image": "/data/upload/3/none.png"}}]))
    close_stores()

    assert by_path.status_code == 200, by_path.text
    assert by_path.json()["results"][0]["result"][0]["value"]["choices"] == ["tabby cat"]
    assert by_url.status_code == 200, by_url.text
    assert missing.status_code == 400
    assert "HTTP 404" in missing.json()["error"]
    assert _UploadHandler.seen_authorization[:2] == [f"Token {TOKEN}", f"Token {TOKEN}"]
