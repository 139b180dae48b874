"""Label Studio's formats: labeling configs, `choices` predictions and webhook annotations.

The shapes follow label-studio-ml-backend's `label_studio_ml/api.py`.
`/predict` receives
`{"tasks": [...], "label_config": XML, "project": "id.timestamp", "params": {...}}`
and returns `{"results": [prediction per task]}`. A prediction is
`{"model_version", "score", "result": [region]}`, and a classification region is
`{"id", "from_name", "to_name", "type": "choices", "value": {"choices": [name]}, "score"}`.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import Any

from service.assist.schemas import Suggestion


class LabelConfigError(ValueError):
    """Raised for a labeling config without a usable Choices tag on an Image tag."""


@dataclass(frozen=True)
class ChoicesControl:
    """The `<Choices>` tag that classifies an `<Image>` tag of a labeling config."""

    from_name: str
    to_name: str
    # Task data key of the image: "image" for <Image value="$image">.
    data_key: str
    # <Choice value="..."> values in config order; empty when the choices are dynamic.
    choices: list[str] = field(default_factory=list)
    multiple: bool = False


def parse_label_config(label_config: str) -> ChoicesControl:
    """Find the first Choices tag whose toName is an Image tag; raise LabelConfigError."""
    try:
        root = ElementTree.fromstring(label_config)
    except ElementTree.ParseError as error:
        raise LabelConfigError(f"label_config is not valid XML: {error}") from error

    images = {}
    for element in root.iter("Image"):
        name = element.get("name")
        value = element.get("value", "")
        if name and value.startswith("$"):
            images[name] = value[1:]

    for element in root.iter("Choices"):
        to_name = element.get("toName", "").split(",")[0]
        if to_name in images and element.get("name"):
            choices = [choice.get("value") or choice.get("alias") or "" for choice in element.iter("Choice")]
            return ChoicesControl(
                from_name=element.get("name", ""),
                to_name=to_name,
                data_key=images[to_name],
                choices=[choice for choice in choices if choice],
                multiple=element.get("choice") == "multiple",
            )
    raise LabelConfigError(
        'label_config has no <Choices> tag classifying an <Image value="$..."> tag; '
        "this ML backend serves image classification projects only"
    )


def build_prediction(
    suggestion: Suggestion, control: ChoicesControl, choice_names: dict[str, str] | None = None
) -> dict[str, Any]:
    """Build one Label Studio prediction holding the first suggestion as a `choices` region.

    `choice_names` maps class ids to the project's own Choice values, so the
    region uses the exact strings of the labeling config.
    """
    result = []
    if suggestion.labels:
        first = suggestion.labels[0]
        name = (choice_names or {}).get(first.id, first.name)
        result.append(
            {
                "id": secrets.token_hex(5),
                "from_name": control.from_name,
                "to_name": control.to_name,
                "type": "choices",
                "value": {"choices": [name]},
                "score": first.confidence,
            }
        )
    return {"model_version": suggestion.model_version, "score": suggestion.confidence, "result": result}


def annotation_choice(annotation: dict[str, Any], from_name: str | None = None) -> str | None:
    """Return the first chosen value of a `choices` region in an annotation, or None."""
    for region in annotation.get("result") or []:
        if not isinstance(region, dict) or region.get("type") != "choices":
            continue
        if from_name is not None and region.get("from_name") != from_name:
            continue
        choices = (region.get("value") or {}).get("choices") or []
        if choices and isinstance(choices[0], str):
            return choices[0]
    return None


def annotator_name(annotation: dict[str, Any]) -> str | None:
    """Return the annotating user as Label Studio sends it: an email, or a user id."""
    completed_by = annotation.get("completed_by")
    if isinstance(completed_by, dict):
        value = completed_by.get("email") or completed_by.get("id")
        return str(value) if value is not None else None
    return str(completed_by) if completed_by is not None else None
