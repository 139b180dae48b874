"""Model backends behind the contract in `service.backends.base`.

`create_backend` picks one from the `model` config section. Backend modules
import torch, transformers or httpx only when chosen, so importing this
package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.backends.base import Backend, BackendError, BackendInfo, BatchTimings, Generation

if TYPE_CHECKING:
    from service.config import ModelConfig

__all__ = ["Backend", "BackendError", "BackendInfo", "BatchTimings", "Generation", "create_backend"]


def create_backend(model_config: ModelConfig) -> Backend:
    """Return an unloaded backend for `model_config.backend`; call `load()` on it before use."""
    if model_config.backend == "transformers":
        from service.backends.transformers_backend import TransformersBackend

        return TransformersBackend(
            model_config.model_id,
            device=model_config.device,
            dtype=model_config.dtype,
            max_new_tokens=model_config.max_new_tokens,
            torch_threads=model_config.torch_threads,
            max_image_side=model_config.max_image_side,
        )

    if model_config.backend == "openai":
        from service.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(
            base_url=model_config.openai_base_url,
            model=model_config.model_id,
            api_key_env=model_config.openai_api_key_env,
            timeout_s=model_config.openai_timeout_s,
            max_new_tokens=model_config.max_new_tokens,
            max_image_side=model_config.max_image_side,
        )

    if model_config.backend == "supervised":
        try:
            from service.backends.supervised_backend import SupervisedBackend
        except ModuleNotFoundError as error:
            raise BackendError(
                f"the supervised backend is not available ({error}); install the project with its evaluation "
                "dependencies (pip install -e .) or choose backend transformers or openai"
            ) from error
        return SupervisedBackend(model_config)

    raise BackendError(f"unknown backend {model_config.backend!r}; expected transformers, openai or supervised")
