"""The backend contract on the offline tiny LLaVA and tiny Idefics3 models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

from service.backends import create_backend
from service.backends.base import BackendError, BackendInfo
from service.backends.transformers_backend import TransformersBackend, resize_to_max_side
from service.config import ModelConfig
from service.models.samples import sample_images
from service.protocols import prompts

TINY_MODELS = ("tiny-llava", "tiny-idefics3")

PROMPTS = [
    prompts.OPEN.text,
    prompts.CLOSED.render(classes=prompts.format_class_list(["tabby cat", "espresso", "missile"])),
    prompts.CHOICE.render(options=prompts.format_options(["tiger cat", "tabby cat", "Egyptian cat", "lynx"])),
    prompts.MULTILABEL.text,
]


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    images = sample_images()
    return [images["cat"], images["coffee"], images["rocket"], images["astronaut"]]


@pytest.fixture(scope="module", params=TINY_MODELS)
def backend(request, models_dir: Path) -> TransformersBackend:
    backend = TransformersBackend(str(models_dir / request.param), max_new_tokens=6)
    backend.load()
    return backend


def test_batch_answers_have_counts_and_timings(backend, photos):
    generations, timings = backend.generate(photos, PROMPTS)

    assert len(generations) == len(PROMPTS)
    for generation in generations:
        assert isinstance(generation.text, str)
        assert 1 <= generation.generated_tokens <= 6
        assert generation.prompt_tokens > backend.count_tokens(prompts.OPEN.text) - 1
    assert timings.preprocess_s > 0
    assert timings.generate_s > 0


def test_prompt_tokens_grow_with_prompt(backend, photos):
    generations, _ = backend.generate(photos, PROMPTS)

    # The closed prompt differs from the open prompt only by its extra text.
    closed_extra = backend.count_tokens(PROMPTS[1]) - backend.count_tokens(PROMPTS[0])
    assert generations[1].prompt_tokens - generations[0].prompt_tokens == closed_extra


def test_batch_equals_single_requests(backend, photos):
    # Greedy decoding with left padding: each row must match the unpadded run.
    batch, _ = backend.generate(photos, PROMPTS)

    for image, prompt, from_batch in zip(photos, PROMPTS, batch, strict=True):
        [alone], _ = backend.generate([image], [prompt])
        assert alone.text == from_batch.text
        assert alone.prompt_tokens == from_batch.prompt_tokens
        assert alone.generated_tokens == from_batch.generated_tokens


def test_left_padding_in_build_inputs(backend, photos):
    inputs = backend.build_inputs(photos[:2], [PROMPTS[0], PROMPTS[1]])

    mask = inputs["attention_mask"]
    # The shorter open prompt is padded at the start; both end on a real token.
    assert mask[0, 0].item() == 0
    assert mask[1, 0].item() == 1
    assert mask[:, -1].tolist() == [1, 1]
    assert inputs["pixel_values"].device.type == backend.device


def test_max_new_tokens_per_call(backend, photos):
    [generation], _ = backend.generate(photos[:1], PROMPTS[:1], max_new_tokens=2)

    assert 1 <= generation.generated_tokens <= 2


def test_info_reports_model(backend):
    info = backend.info()

    assert isinstance(info, BackendInfo)
    assert info.backend == "transformers"
    assert info.model_id == backend.model_id
    assert info.device == "cpu"
    assert info.dtype == "float32"
    assert info.max_context_tokens == 2048


def test_processor_runs_without_torchvision(backend):
    # transformers falls back to the PIL image processors when torchvision is
    # missing, and this project must never install torchvision.
    assert importlib.util.find_spec("torchvision") is None
    assert type(backend.processor.image_processor).__name__.endswith("Pil")


def test_count_tokens_uses_tokenizer(backend):
    assert backend.count_tokens("tabby cat") == len(backend.tokenizer("tabby cat", add_special_tokens=False)["input_ids"])
    assert backend.count_tokens("") == 0


def test_large_image_is_downscaled(backend, photos):
    large = photos[0].resize((3000, 2000))

    generations, _ = backend.generate([large], [PROMPTS[0]])

    assert len(generations) == 1
    assert resize_to_max_side(large, 1024).size == (1024, 683)
    assert resize_to_max_side(photos[0], 1024).size == photos[0].size


def test_mismatched_lengths_raise(backend, photos):
    with pytest.raises(BackendError, match="2 images but 1 prompts"):
        backend.generate(photos[:2], PROMPTS[:1])


def test_empty_batch_raises(backend):
    with pytest.raises(BackendError, match="empty batch"):
        backend.generate([], [])


def test_generate_before_load_raises(models_dir):
    backend = TransformersBackend(str(models_dir / "tiny-llava"))

    with pytest.raises(BackendError, match="not loaded"):
        backend.generate([Image.new("RGB", (8, 8))], ["hi"])


def test_missing_local_path_names_fix(tmp_path):
    missing = tmp_path / "no-such-model"
    backend = TransformersBackend(str(missing))

    with pytest.raises(BackendError) as raised:
        backend.load()

    message = str(raised.value)
    assert str(missing) in message
    assert "not found" in message
    assert "mllm-classify build-models" in message


def test_unknown_hub_id_offline_names_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backend = TransformersBackend("mllm-classify-tests/no-such-model")

    with pytest.raises(BackendError) as raised:
        backend.load()

    message = str(raised.value)
    assert "'mllm-classify-tests/no-such-model'" in message
    assert "HF_HUB_OFFLINE" in message
    assert "mllm-classify build-models" in message


def test_file_as_model_path_raises(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"not a model")

    with pytest.raises(BackendError, match="is a file, not a model directory"):
        TransformersBackend(str(weights)).load()


def test_directory_without_model_raises(tmp_path):
    backend = TransformersBackend(str(tmp_path))

    with pytest.raises(BackendError, match="cannot load model"):
        backend.load()


def test_invalid_dtype_raises():
    with pytest.raises(BackendError, match="invalid dtype 'int8'"):
        TransformersBackend("models/tiny-llava", dtype="int8")


def test_create_backend_builds_transformers(models_dir):
    config = ModelConfig(model_id=str(models_dir / "tiny-llava"), max_new_tokens=3, max_image_side=64)

    backend = create_backend(config)

    assert isinstance(backend, TransformersBackend)
    assert backend.max_new_tokens == 3
    assert backend.max_image_side == 64
