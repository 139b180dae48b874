"""Build the offline models into a directory, skipping those already built.

Each model directory contains what `save_pretrained` writes for the model and its
processor, plus `build-manifest.json` with the fingerprint of the recipe that
produced it. A model is rebuilt when its fingerprint changes (new sizes, new
training settings, new tokenizer corpus) or when `force` is set.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from service.models import tokenizer as tokenizer_module
from service.models.architectures import ModelSpec, build_model
from service.models.demo_training import TrainingSettings, train_demo_model
from service.models.samples import DEMO_ANSWERS

logger = logging.getLogger(__name__)

# Bump when the build code changes what it writes for the same recipe.
BUILD_VERSION = 1
MANIFEST_NAME = "build-manifest.json"
SEED = 0


@dataclass(frozen=True)
class ModelRecipe:
    spec: ModelSpec
    # Demo models are trained on the bundled photos; the others keep random weights.
    training: TrainingSettings | None = None


RECIPES: dict[str, ModelRecipe] = {
    # Overhead-bound: 32 px images, 16 image tokens, 1.4M parameters.
    "tiny-llava": ModelRecipe(ModelSpec("llava", 32, 8, 32, 2, 2, 128, 2, 4, 256)),
    # Idefics3 without image splitting: 32 px, 4 image tokens after pixel shuffle.
    "tiny-idefics3": ModelRecipe(ModelSpec("idefics3", 32, 8, 32, 2, 2, 128, 2, 4, 256)),
    # Compute-bound: 224 px, patch 16 (196 image tokens), 34.7M parameters.
    "bench-llava": ModelRecipe(ModelSpec("llava", 224, 16, 384, 6, 6, 512, 6, 8, 1376)),
    # 48 px, 36 image tokens, 1.1M parameters, trained for 250 steps.
    "demo-llava": ModelRecipe(
        ModelSpec("llava", 48, 8, 64, 2, 2, 128, 2, 4, 384, tie_embeddings=True),
        TrainingSettings(),
    ),
}
MODEL_NAMES: tuple[str, ...] = tuple(RECIPES)


@dataclass(frozen=True)
class BuildResult:
    name: str
    path: Path
    built: bool  # False when an up-to-date build was already there
    seconds: float
    parameters: int | None = None


def _corpus() -> list[str]:
    answers = [text for answers in DEMO_ANSWERS.values() for text in (answers.open, answers.class_name, answers.objects)]
    return tokenizer_module.corpus_lines(tokenizer_module.read_imagenet_names(), answers)


def _fingerprint(recipe: ModelRecipe, corpus: list[str]) -> str:
    content = {
        "build_version": BUILD_VERSION,
        "seed": SEED,
        "spec": asdict(recipe.spec),
        "training": asdict(recipe.training) if recipe.training else None,
        "answers": {name: asdict(answers) for name, answers in DEMO_ANSWERS.items()} if recipe.training else None,
        "corpus": hashlib.sha256("\n".join(corpus).encode("utf-8")).hexdigest(),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()


def _is_up_to_date(path: Path, fingerprint: str) -> bool:
    manifest = path / MANIFEST_NAME
    if not manifest.is_file() or not (path / "config.json").is_file():
        return False
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("fingerprint") == fingerprint
    except (OSError, json.JSONDecodeError):
        return False


def _build_one(name: str, recipe: ModelRecipe, tokenizer, path: Path, fingerprint: str) -> int:
    """Build, train if the recipe has training settings, and save model `name`; return its parameter count."""
    model, processor = build_model(recipe.spec, tokenizer, SEED)
    if recipe.training is not None:
        # Training batches are padded on the right; served batches on the left.
        processor.tokenizer.padding_side = "right"
        train_demo_model(model, processor, tokenizer_module.read_imagenet_names(synonyms=False), recipe.training)
        processor.tokenizer.padding_side = "left"

    # Write into a fresh directory so a failed build never leaves a manifest
    # next to stale weights.
    if path.exists():
        shutil.rmtree(path)
    staging = path.with_name(path.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    manifest = {"name": name, "build_version": BUILD_VERSION, "fingerprint": fingerprint, "parameters": parameters}
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    staging.rename(path)
    return parameters


def build_models(out_dir: str | Path = "models", only: list[str] | None = None, force: bool = False) -> list[BuildResult]:
    """Build the models named in `only` (default: all) into `out_dir`; return one result per model."""
    names = list(only) if only else list(MODEL_NAMES)
    unknown = [name for name in names if name not in RECIPES]
    if unknown:
        raise ValueError(f"unknown model {', '.join(unknown)}; known models: {', '.join(MODEL_NAMES)}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(out_dir / ".build.lock"):
        return _build_missing(out_dir, names, force)


@contextlib.contextmanager
def _exclusive_lock(path: Path):
    # Test sessions and `make` may build into the same directory at once; the
    # second waits and then finds the models up to date.
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_missing(out_dir: Path, names: list[str], force: bool) -> list[BuildResult]:
    corpus = _corpus()
    tokenizer = None
    results = []
    for name in names:
        recipe = RECIPES[name]
        path = out_dir / name
        fingerprint = _fingerprint(recipe, corpus)
        if not force and _is_up_to_date(path, fingerprint):
            logger.info("model %s is up to date in %s", name, path)
            results.append(BuildResult(name, path, built=False, seconds=0.0))
            continue

        started = time.perf_counter()
        if tokenizer is None:
            tokenizer = tokenizer_module.train_tokenizer(corpus)
        parameters = _build_one(name, recipe, tokenizer, path, fingerprint)
        seconds = time.perf_counter() - started
        logger.info("built model %s (%d parameters) in %.1f s", name, parameters, seconds)
        results.append(BuildResult(name, path, built=True, seconds=seconds, parameters=parameters))
    return results
