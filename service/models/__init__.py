"""Offline models that the project builds itself: tiny test models and the demo model.

`build_models` writes them with `save_pretrained`, so the transformers backend
loads them like any Hugging Face model directory. `samples` provides the
bundled photos and the demo model's expected answers.
"""

from service.models.build import MODEL_NAMES, BuildResult, build_models

__all__ = ["MODEL_NAMES", "BuildResult", "build_models"]
