"""A scripted `classify` for route and store tests that do not judge suggestion quality.

Tests that claim real suggestions use the Engine with the demo model instead
(see test_engine_assist.py).
"""

from __future__ import annotations

import hashlib
import io
import uuid

from PIL import Image

from mapping.taxonomy import Taxonomy, TaxonomyClass
from service.errors import invalid_parameter
from service.schemas import ClassifyParams, ClassifyResult, Label, StageTimings

TAXONOMY = Taxonomy(
    "assist-test",
    [
        TaxonomyClass("n02123045", 0, "tabby cat", ("tabby",)),
        TaxonomyClass("n02123159", 1, "tiger cat"),
        TaxonomyClass("n07920052", 2, "espresso"),
        TaxonomyClass("n03063599", 3, "coffee mug"),
        TaxonomyClass("n03773504", 4, "missile"),
        TaxonomyClass("n04008634", 5, "projectile"),
        TaxonomyClass("n02504458", 6, "African elephant"),
    ],
)


def image_bytes(color: tuple[int, int, int], size: int = 32) -> bytes:
    """Return a PNG of one color; the color picks the scripted answer."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


RED = image_bytes((200, 30, 30))
GREEN = image_bytes((30, 200, 30))
BLUE = image_bytes((30, 30, 200))
WHITE = image_bytes((250, 250, 250))

# Image -> (raw answer, [(class id, mapping score)]) of the open protocol.
OPEN_ANSWERS = {
    hashlib.sha256(RED).hexdigest(): ("tabby cat", [("n02123045", 1.0), ("n02123159", 0.82), ("n03063599", 0.31)]),
    hashlib.sha256(GREEN).hexdigest(): ("a cup", [("n03063599", 0.64), ("n07920052", 0.62), ("n02123045", 0.2)]),
    hashlib.sha256(BLUE).hexdigest(): ("rocket", [("n03773504", 0.7), ("n04008634", 0.69), ("n06000000", 0.1)]),
    # An exact name match maps to one class only.
    hashlib.sha256(WHITE).hexdigest(): ("espresso", [("n07920052", 1.0)]),
}

# Class id -> its nearest classes with cosine similarity, for ScriptedMapper.
NEIGHBOURS = {"n07920052": [("n03063599", 0.71), ("n02123045", 0.12), ("n03773504", 0.05)]}


class ScriptedMapper:
    """The part of `mapping.Mapper` that suggestions use: nearest_classes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, list[str] | None, list[str]]] = []

    def nearest_classes(self, text: str, k: int, candidates=None, exclude=()) -> list[Label]:
        self.calls.append((text, k, candidates, list(exclude)))
        first = TAXONOMY.lookup_name(text)[0]
        found = []
        for class_id, score in NEIGHBOURS.get(first.id, []):
            if class_id in exclude or (candidates is not None and class_id not in candidates):
                continue
            cls = TAXONOMY.by_id(class_id)
            found.append(Label(id=cls.id, index=cls.index, name=cls.name, score=score))
        return found[:k]


class ScriptedClassify:
    """Answer the open protocol from OPEN_ANSWERS and the choice protocol with `choice_pick`."""

    def __init__(self, choice_pick: str | None = None) -> None:
        # Class id that the choice pass picks; None makes it abstain.
        self.choice_pick = choice_pick
        self.calls: list[ClassifyParams] = []

    def taxonomy(self, name: str | None) -> Taxonomy:
        if name not in (None, TAXONOMY.name):
            raise invalid_parameter(f"unknown taxonomy {name!r}", "taxonomy")
        return TAXONOMY

    async def __call__(self, image: bytes, params: ClassifyParams) -> ClassifyResult:
        self.calls.append(params)
        if params.protocol == "choice":
            return self._choice(params)

        raw, scored = OPEN_ANSWERS.get(hashlib.sha256(image).hexdigest(), ("nothing", []))
        labels = []
        for class_id, score in scored:
            if class_id not in TAXONOMY:
                continue
            if params.candidates is not None and class_id not in params.candidates:
                continue
            cls = TAXONOMY.by_id(class_id)
            labels.append(Label(id=cls.id, index=cls.index, name=cls.name, score=score))
        labels = labels[: params.top_k]
        margin = labels[0].score - labels[1].score if len(labels) > 1 else 1.0
        return self._result(raw, labels, "embedding", margin, abstain=not labels, protocol="open")

    def _choice(self, params: ClassifyParams) -> ClassifyResult:
        if self.choice_pick is None:
            return self._result("I cannot tell", [], "none", 0.0, abstain=True, protocol="choice")
        cls = TAXONOMY.by_id(self.choice_pick)
        label = Label(id=cls.id, index=cls.index, name=cls.name, score=1.0)
        return self._result("B", [label], "option", 1.0, abstain=False, protocol="choice")

    def _result(self, raw: str, labels: list[Label], method: str, margin: float, *, abstain: bool,
                protocol: str) -> ClassifyResult:
        return ClassifyResult(
            request_id=uuid.uuid4().hex,
            labels=labels,
            raw_answer=raw,
            method=method,
            margin=margin,
            similarity=labels[0].score if labels else 0.0,
            out_of_list=False,
            abstain=abstain,
            protocol=protocol,
            prompt_id=f"{protocol}-v1",
            model="scripted",
            taxonomy=TAXONOMY.name,
            timings=StageTimings(),
        )
