"""Request bodies shaped like the ones Label Studio sends to an ML backend."""

from __future__ import annotations

import base64
from typing import Any

LABEL_CONFIG = """
<View>
  <Image name="image" value="$image"/>
  <Choices name="class" toName="image" choice="single">
    <Choice value="tabby cat"/>
    <Choice value="Tiger Cat"/>
    <Choice value="espresso"/>
    <Choice value="missile"/>
    <Choice value="Something else"/>
  </Choices>
</View>
"""
CHOICE_VALUES = ["tabby cat", "Tiger Cat", "espresso", "missile", "Something else"]


def data_uri(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")


def predict_body(tasks: list[dict[str, Any]], label_config: str = LABEL_CONFIG) -> dict[str, Any]:
    """A /predict body as Label Studio 1.x sends it (see label_studio_ml/api.py)."""
    return {
        "tasks": tasks,
        "model_version": "",
        "project": "3.1764800000",
        "label_config": label_config,
        "params": {"login": None, "password": None, "context": None},
    }


def webhook_body(action: str, task_id: int, choice: str | None, *, annotation_id: int = 11,
                 was_cancelled: bool = False) -> dict[str, Any]:
    """An ANNOTATION_CREATED or ANNOTATION_UPDATED webhook payload."""
    result = []
    if choice is not None:
        result.append({
            "id": "b7Gk2",
            "type": "choices",
            "value": {"choices": [choice]},
            "origin": "manual",
            "to_name": "image",
            "from_name": "class",
        })
    return {
        "action": action,
        "annotation": {
            "id": annotation_id,
            "result": result,
            "was_cancelled": was_cancelled,
            "ground_truth": False,
            "lead_time": 4.2,
            "task": task_id,
            "project": 3,
            "completed_by": 1,
        },
        "task": {"id": task_id, "data": {"image": "/data/upload/3/cat.png"}, "project": 3},
        "project": {"id": 3, "title": "assist", "label_config": LABEL_CONFIG},
    }
