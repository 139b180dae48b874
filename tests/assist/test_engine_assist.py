"""Annotation assist end to end with the real engine and the demo model.

The demo model was trained on the bundled photos, so its answers are known:
"tabby cat" for the cat and "moped" for the motorcycle (exact name matches),
"missile" for the rocket (a name that two ImageNet classes share, so the
suggestion is a tie), and "astronaut" for the astronaut, which names no
ImageNet class and maps by embedding with low confidence.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from service.assist.store import Store
from service.models.samples import sample_images

from .labelstudio_payloads import predict_body, webhook_body
from .servers import CHROMEDRIVER, CHROMIUM, headless_chromium, standalone_server

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).parent / "data" / "labelstudio_predict_response.schema.json").read_text())
PHOTOS = {"cat.jpg": "cat", "motorcycle.jpg": "motorcycle", "rocket.jpg": "rocket", "space.jpg": "astronaut"}
EXPECTED_FIRST = {"cat.jpg": "tabby cat", "motorcycle.jpg": "moped", "rocket.jpg": "missile"}
LABEL_CONFIG = """
<View>
  <Image name="image" value="$image"/>
  <Choices name="class" toName="image">
    <Choice value="tabby cat"/><Choice value="tiger cat"/><Choice value="Moped"/>
    <Choice value="Persian cat"/><Choice value="Egyptian Mau"/>
  </Choices>
</View>
"""


def _jpeg(image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    images = sample_images()
    for name, key in PHOTOS.items():
        (folder / name).write_bytes(_jpeg(images[key]))
    return folder


@pytest.fixture(scope="module")
def demo_model(models_dir: Path) -> Path:
    return Path(models_dir) / "demo-llava"


class AssistServer:
    """`mllm-classify assist serve` on a SQLite file that outlives restarts of the server."""

    def __init__(self, model_dir: Path, photos: Path, database_url: str) -> None:
        self.model_dir = model_dir
        self.photos = photos
        self.database_url = database_url
        self.url = ""
        self._stack = contextlib.ExitStack()

    def start(self) -> None:
        # The default top_k comes from the environment, as a deployment would set it.
        environment = {"MLLM_CLASSIFY_ASSIST__TOP_K": "4"}
        self.url = self._stack.enter_context(
            standalone_server(self.model_dir, self.photos, self.database_url, env=environment)
        )

    def stop(self) -> None:
        self._stack.close()

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def assist_server(demo_model: Path, photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AssistServer]:
    database_url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'assist.sqlite3'}"
    server = AssistServer(demo_model, photos, database_url)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(assist_server: AssistServer) -> tuple[str, str]:
    return assist_server.url, assist_server.database_url


def test_suggestions_for_demo_photos(server: tuple[str, str], photos: Path) -> None:
    url, database_url = server
    uncertainties = {}
    for name, expected in EXPECTED_FIRST.items():
        response = httpx.post(
            url + "/assist/suggest",
            files={"image": (name, (photos / name).read_bytes(), "image/jpeg")},
            data={"top_k": "3"},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["labels"][0]["name"] == expected, body
        confidences = [label["confidence"] for label in body["labels"]]
        assert confidences == sorted(confidences, reverse=True)
        # A name match maps to one class; its nearest classes fill the other ranks.
        assert len(body["labels"]) == 3
        assert body["labels"][0]["score"] == 1.0
        stored = Store(database_url).get_suggestion(body["id"])
        assert stored is not None
        assert stored.raw_answer == body["raw_answer"]
        uncertainties[name] = body["uncertainty"]

    # The two "missile" classes tie, so the rocket is the hardest image.
    assert uncertainties["rocket.jpg"] == pytest.approx(1.0, abs=0.01)
    assert uncertainties["cat.jpg"] < 0.1
    assert uncertainties["motorcycle.jpg"] < 0.1


def test_out_of_list_answer_is_uncertain(server: tuple[str, str], photos: Path) -> None:
    url, _ = server
    response = httpx.post(
        url + "/assist/suggest",
        files={"image": ("space.jpg", (photos / "space.jpg").read_bytes(), "image/jpeg")},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["raw_answer"] == "astronaut"
    assert len(body["labels"]) == 4
    assert body["labels"][0]["score"] < 1.0
    assert body["labels"][0]["confidence"] < 0.6
    assert body["uncertainty"] > 0.4


def test_confirming_pass_on_demo_photo(server: tuple[str, str], photos: Path) -> None:
    url, _ = server
    response = httpx.post(
        url + "/assist/suggest",
        files={"image": ("cat.jpg", (photos / "cat.jpg").read_bytes(), "image/jpeg")},
        data={"top_k": "3", "confirm": "true"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["confirmed"] is True, body
    assert body["labels"][0]["name"] == "tabby cat"
    assert body["labels"][0]["confidence"] >= 0.5
    # The confirming pass scores the suggested classes: their probabilities are the confidences.
    assert sum(label["confidence"] for label in body["labels"]) == pytest.approx(1.0, abs=1e-3)


def test_labelstudio_round_trip(server: tuple[str, str], photos: Path) -> None:
    url, database_url = server
    image = "data:image/jpeg;base64," + base64.b64encode((photos / "motorcycle.jpg").read_bytes()).decode()
    response = httpx.post(
        url + "/labelstudio/predict",
        json=predict_body([{"id": 301, "data": {"image": image}}], LABEL_CONFIG),
        timeout=120,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    jsonschema.validate(body, SCHEMA)
    region = body["results"][0]["result"][0]
    # The config spells the class "Moped"; the prediction must use that spelling.
    assert region["value"]["choices"] == ["Moped"]
    assert (region["from_name"], region["to_name"], region["type"]) == ("class", "image", "choices")

    event = webhook_body("ANNOTATION_CREATED", 301, "Moped", annotation_id=77)
    recorded = httpx.post(url + "/labelstudio/webhook", json=event, timeout=30)
    assert recorded.status_code == 201, recorded.text

    store = Store(database_url)
    suggestion = store.latest_suggestion(task_id="301")
    assert suggestion is not None
    decision = store.latest_decision(suggestion.id)
    assert decision is not None
    assert (decision.decision, decision.rank, decision.external_id) == ("accepted", 1, "77")

    metrics = httpx.get(url + "/metrics", timeout=30).text
    assert 'mllm_classify_assist_decisions_total{decision="accepted",rank="1",source="labelstudio"} 1.0' in metrics


@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                    reason="Chromium is not installed; scripts/setup-system.sh installs it")
def test_review_page_click_accepts(server: tuple[str, str], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, database_url = server

    def shown(name: str):
        return lambda page: page.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == name

    with headless_chromium() as driver:
        driver.get(url + "/assist/")
        WebDriverWait(driver, 120).until(shown("cat.jpg"))
        first = driver.find_element(By.CSS_SELECTOR, '.suggestion[data-rank="1"]')
        assert "tabby cat" in first.text

        # The screenshot shows the page right before the click.
        screenshot = tmp_path / "annotation-assist.png"
        driver.save_screenshot(str(screenshot))
        first.click()
        WebDriverWait(driver, 60).until(
            lambda page: page.find_element(By.TAG_NAME, "body").get_attribute("data-last-decision")
        )

        # "Hardest first" suggests labels for the rest and shows the tied rocket next.
        driver.find_element(By.ID, "hardest").click()
        WebDriverWait(driver, 180).until(shown("rocket.jpg"))
        names = [element.text for element in driver.find_elements(By.CSS_SELECTOR, ".suggestion .name")]
        assert names[:2] == ["missile", "missile"]

    store = Store(database_url)
    suggestion = store.latest_suggestion(image_ref="cat.jpg")
    assert suggestion is not None
    assert suggestion.source == "review"
    decision = store.latest_decision(suggestion.id)
    assert decision is not None
    assert (decision.decision, decision.rank, decision.class_name) == ("accepted", 1, "tabby cat")

    assert screenshot.stat().st_size > 10_000
    if os.environ.get("MLLM_CLASSIFY_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(screenshot, REPO_ROOT / "docs" / "annotation-assist.png")


def test_restart_keeps_history(assist_server: AssistServer) -> None:
    url = assist_server.url
    suggestion = httpx.post(url + "/assist/queue/motorcycle.jpg/suggest", timeout=120).json()
    decision = httpx.post(url + "/assist/decisions", json={"suggestion_id": suggestion["id"], "rank": 1}, timeout=30)
    assert decision.status_code == 201, decision.text
    before = httpx.get(url + "/assist/report", timeout=30).json()

    assist_server.restart()
    url = assist_server.url

    queue = httpx.get(url + "/assist/queue", timeout=30).json()
    by_name = {item["name"]: item for item in queue["items"]}
    assert by_name["motorcycle.jpg"]["suggestion"]["id"] == suggestion["id"]
    assert by_name["motorcycle.jpg"]["decision"]["rank"] == 1
    assert by_name["motorcycle.jpg"]["decision"]["class_name"] == "moped"

    # The stored suggestion is reused, not asked of the model again.
    again = httpx.post(url + "/assist/queue/motorcycle.jpg/suggest", timeout=120).json()
    assert again["id"] == suggestion["id"]

    after = httpx.get(url + "/assist/report", timeout=30).json()
    assert after == before
    assert after["decided"] >= 1
