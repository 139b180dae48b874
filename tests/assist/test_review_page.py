"""The review page in headless Chromium against the /assist app with a scripted classify.

test_engine_assist.py drives the same page with the real engine and the demo model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from service.assist.app import build_assist_app
from service.assist.settings import AssistSettings
from service.assist.store import Store, close_stores

from .scripted import BLUE, GREEN, RED, ScriptedClassify
from .servers import CHROMEDRIVER, CHROMIUM, headless_chromium, serve_in_thread

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="Chromium is not installed; scripts/setup-system.sh installs it"),
]


@pytest.fixture
def review(tmp_path: Path) -> Iterator[tuple[str, AssistSettings]]:
    images = tmp_path / "images"
    images.mkdir()
    for name, data in (("a-cat.png", RED), ("b-cup.png", GREEN), ("c-rocket.png", BLUE), ("d-cup.png", GREEN)):
        (images / name).write_bytes(data)
    settings = AssistSettings(database_url=f"sqlite:///{tmp_path / 'assist.sqlite3'}", images_dir=images, top_k=3)
    classify = ScriptedClassify()
    app = Starlette(routes=[Mount("/assist", build_assist_app(classify, classify.taxonomy, settings))])
    with serve_in_thread(app) as url:
        yield url, settings
    close_stores()


def _wait_for_image(driver, name: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(lambda page: page.find_element("tag name", "body").get_attribute("data-ready") == name)


def _wait_for_decision_count(driver, count: int) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(
        lambda page: page.find_element("id", "progress").text.startswith(f"{count} / ")
    )


def _latest(settings: AssistSettings, name: str):
    store = Store(settings.database_url)
    suggestion = store.latest_suggestion(image_ref=name)
    assert suggestion is not None, name
    return suggestion, store.latest_decision(suggestion.id)


def test_click_key_type_and_reject(review: tuple[str, AssistSettings]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url, settings = review
    with headless_chromium() as driver:
        driver.get(url + "/assist/")

        # A click on the first suggestion accepts it.
        _wait_for_image(driver, "a-cat.png")
        first = driver.find_element(By.CSS_SELECTOR, '.suggestion[data-rank="1"]')
        assert "tabby cat" in first.text
        first.click()
        _wait_for_decision_count(driver, 1)
        suggestion, decision = _latest(settings, "a-cat.png")
        assert decision is not None
        assert (decision.decision, decision.rank, decision.class_id) == ("accepted", 1, "n02123045")
        assert decision.source == "review"

        # Key 2 accepts the second suggestion of the next image.
        _wait_for_image(driver, "b-cup.png")
        driver.find_element(By.TAG_NAME, "body").send_keys("2")
        _wait_for_decision_count(driver, 2)
        _, decision = _latest(settings, "b-cup.png")
        assert decision is not None
        assert (decision.decision, decision.rank, decision.class_id) == ("accepted", 2, "n07920052")

        # Typing with autocomplete enters a label that was not suggested.
        _wait_for_image(driver, "c-rocket.png")
        driver.find_element(By.TAG_NAME, "body").send_keys("t")
        box = driver.find_element(By.ID, "label-input")
        box.send_keys("tabb")
        WebDriverWait(driver, 10).until(
            lambda page: page.find_elements(By.CSS_SELECTOR, "#label-options li")
        )
        option = driver.find_element(By.CSS_SELECTOR, "#label-options li")
        assert option.get_attribute("data-id") == "n02123045"
        box.send_keys(Keys.ENTER)
        _wait_for_decision_count(driver, 3)
        _, decision = _latest(settings, "c-rocket.png")
        assert decision is not None
        assert (decision.decision, decision.rank, decision.class_id) == ("entered", None, "n02123045")

        # r rejects the last image.
        _wait_for_image(driver, "d-cup.png")
        driver.find_element(By.TAG_NAME, "body").send_keys("r")
        _wait_for_decision_count(driver, 4)
        _, decision = _latest(settings, "d-cup.png")
        assert decision is not None
        assert decision.decision == "rejected"

        # A reload shows the stored state.
        driver.get(url + "/assist/")
        _wait_for_decision_count(driver, 4)
        assert driver.find_element(By.ID, "progress").text == "4 / 4 decided"
        assert driver.find_element(By.ID, "status").text == ""
