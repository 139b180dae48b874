"""The demo model answers the bundled photos as trained, through the transformers backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.backends.transformers_backend import TransformersBackend
from service.models.build import MANIFEST_NAME, MODEL_NAMES, build_models
from service.models.samples import DEMO_ANSWERS, sample_images
from service.protocols import prompts


@pytest.fixture(scope="module")
def demo_backend(models_dir: Path) -> TransformersBackend:
    backend = TransformersBackend(str(models_dir / "demo-llava"))
    backend.load()
    return backend


@pytest.fixture(scope="module")
def photos():
    return sample_images()


def _answers(backend, photos, prompt_text: str) -> dict[str, str]:
    names = list(photos)
    generations, _ = backend.generate([photos[name] for name in names], [prompt_text] * len(names))
    return {name: generation.text for name, generation in zip(names, generations, strict=True)}


def test_demo_model_answers_bundled_photos(demo_backend, photos):
    answers = _answers(demo_backend, photos, prompts.OPEN.text)

    assert answers["cat"] == "tabby cat"
    assert answers["coffee"] == "espresso"
    assert answers["rocket"] == "missile"
    for name, expected in DEMO_ANSWERS.items():
        assert answers[name] == expected.open, name


def test_demo_model_answers_class_list(demo_backend, photos):
    class_list = prompts.format_class_list(["goldfish", "tabby cat", "espresso", "missile", "moped", "tiger cat", "tripod"])

    answers = _answers(demo_backend, photos, prompts.CLOSED.render(classes=class_list))

    for name, expected in DEMO_ANSWERS.items():
        assert answers[name] == expected.class_name, name


def test_demo_model_answers_choice(demo_backend, photos):
    options = prompts.format_options(["tiger cat", "espresso", "tabby cat", "missile", "wall clock"])

    answers = _answers(demo_backend, photos, prompts.CHOICE.render(options=options))

    for name in ("cat", "coffee", "rocket", "clock"):
        assert answers[name] == DEMO_ANSWERS[name].class_name, name


@pytest.mark.parametrize(
    ("photo", "options"),
    [
        ("cat", ["tiger cat", "Egyptian cat", "tabby cat", "lynx", "Persian cat"]),
        ("coffee", ["espresso machine", "espresso", "measuring cup", "coffee mug", "eggnog"]),
        ("rocket", ["airliner", "space shuttle", "missile", "airship", "military aircraft"]),
    ],
)
def test_demo_model_picks_among_similar_options(demo_backend, photos, photo, options):
    # Options like the two-stage choice protocol builds: the nearest classes to a first answer.
    prompt = prompts.CHOICE.render(options=prompts.format_options(options))

    [generation], _ = demo_backend.generate([photos[photo]], [prompt])

    assert generation.text == DEMO_ANSWERS[photo].class_name


def test_demo_model_answers_long_class_list(demo_backend, photos):
    demo_classes = sorted({answers.class_name for answers in DEMO_ANSWERS.values()})
    distractors = ["goldfish", "tench", "lion", "tiger cat", "Egyptian cat", "measuring cup", "coffee mug", "airliner", "space shuttle"]
    class_list = prompts.format_class_list(distractors * 3 + demo_classes)

    answers = _answers(demo_backend, photos, prompts.CLOSED.render(classes=class_list))

    for name, expected in DEMO_ANSWERS.items():
        assert answers[name] == expected.class_name, name


def test_demo_model_lists_objects(demo_backend, photos):
    answers = _answers(demo_backend, photos, prompts.MULTILABEL.text)

    for name, expected in DEMO_ANSWERS.items():
        assert answers[name] == expected.objects, name


def test_sample_images_are_rgb(photos):
    assert set(photos) == set(DEMO_ANSWERS)
    for name, image in photos.items():
        assert image.mode == "RGB", name
        assert min(image.size) >= 256, name


def test_build_skips_up_to_date_models(models_dir):
    results = build_models(models_dir)

    assert [result.name for result in results] == list(MODEL_NAMES)
    assert all(not result.built for result in results)
    for name in MODEL_NAMES:
        assert (models_dir / name / MANIFEST_NAME).is_file()
        assert (models_dir / name / "config.json").is_file()


def test_build_rejects_unknown_model(tmp_path):
    with pytest.raises(ValueError, match="unknown model no-such-model"):
        build_models(tmp_path, only=["no-such-model"])


@pytest.mark.slow
def test_build_writes_loadable_model(tmp_path):
    [result] = build_models(tmp_path, only=["tiny-idefics3"])

    assert result.built
    assert result.parameters > 0
    backend = TransformersBackend(str(result.path), max_new_tokens=2)
    backend.load()
    [generation], _ = backend.generate([sample_images()["cat"]], [prompts.OPEN.text])
    assert generation.generated_tokens >= 1

    [again] = build_models(tmp_path, only=["tiny-idefics3"])
    assert not again.built

    [forced] = build_models(tmp_path, only=["tiny-idefics3"], force=True)
    assert forced.built
