"""Annotation assist inside the real BentoML service, on its batched path, with the demo model."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from service.assist.store import Store
from service.models.samples import sample_images

from .labelstudio_payloads import predict_body, webhook_body
from .servers import free_port

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).parent / "data" / "labelstudio_predict_response.schema.json").read_text())
LABEL_CONFIG = """
<View>
  <Image name="image" value="$image"/>
  <Choices name="class" toName="image"><Choice value="tabby cat"/><Choice value="tiger cat"/></Choices>
</View>
"""


def _jpeg(name: str) -> bytes:
    buffer = io.BytesIO()
    sample_images()[name].convert("RGB").save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def service(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root = tmp_path_factory.mktemp("bentoml-assist")
    database_url = f"sqlite:///{root / 'assist.sqlite3'}"
    port = free_port()
    env = {
        **os.environ,
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(root / "bentoml"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "MLLM_CLASSIFY_MODEL__MODEL_ID": str(Path(models_dir) / "demo-llava"),
        "MLLM_CLASSIFY_SERVER__GRPC_ENABLED": "false",
        # The service mounts annotation assist itself and reads these settings.
        "MLLM_CLASSIFY_ASSIST__DATABASE_URL": database_url,
        "MLLM_CLASSIFY_ASSIST__TOP_K": "3",
    }
    log_path = root / "service.log"
    command = [sys.executable, "-m", "bentoml", "serve", "service.service:Classifier",
               "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"bentoml serve not ready within 300 s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield url, database_url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def test_suggest_through_service(service: tuple[str, str]) -> None:
    url, database_url = service
    response = httpx.post(url + "/assist/suggest", files={"image": ("cat.jpg", _jpeg("cat"), "image/jpeg")},
                          data={"confirm": "true"}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["labels"][0]["name"] == "tabby cat"
    assert len(body["labels"]) == 3
    assert body["confirmed"] is True
    assert Store(database_url).get_suggestion(body["id"]) is not None

    page = httpx.get(url + "/assist/", timeout=30)
    assert '<meta name="assist-base" content="/assist/">' in page.text

    metrics = httpx.get(url + "/metrics", timeout=30).text
    assert 'mllm_classify_assist_suggestions_total{source="api",taxonomy="imagenet-1k"} 1.0' in metrics


def test_labelstudio_through_service(service: tuple[str, str]) -> None:
    url, database_url = service
    image = "data:image/jpeg;base64," + base64.b64encode(_jpeg("cat")).decode()
    response = httpx.post(url + "/labelstudio/predict",
                          json=predict_body([{"id": 88, "data": {"image": image}}], LABEL_CONFIG), timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    jsonschema.validate(body, SCHEMA)
    assert body["results"][0]["result"][0]["value"]["choices"] == ["tabby cat"]

    recorded = httpx.post(url + "/labelstudio/webhook", json=webhook_body("ANNOTATION_UPDATED", 88, "tiger cat"),
                          timeout=30)
    assert recorded.status_code == 201, recorded.text
    store = Store(database_url)
    suggestion = store.latest_suggestion(task_id="88")
    assert suggestion is not None
    decision = store.latest_decision(suggestion.id)
    assert decision is not None
    assert (decision.decision, decision.rank, decision.class_name) == ("accepted", 2, "tiger cat")
