"""Configurations and processors of the offline LLaVA and Idefics3 models.

Every model pairs a small ViT with a small Llama decoder, both with random
weights from a fixed seed. Processors use the PIL image backends, so the
models load and run without torchvision.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.models import tokenizer as tokenizer_module


@dataclass(frozen=True)
class ModelSpec:
    """Sizes of one offline model: image, vision tower and text decoder."""

    family: str  # "llava" or "idefics3"
    image_size: int
    patch_size: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_intermediate: int
    max_positions: int = 2048
    # Random-weight models keep separate input and output embeddings: tied ones
    # make an untrained decoder repeat the last prompt token (a special token that
    # decodes to an empty answer) instead of emitting varied text.
    tie_embeddings: bool = False


def _vision_kwargs(spec: ModelSpec) -> dict:
    return {
        "hidden_size": spec.vision_hidden,
        "intermediate_size": 4 * spec.vision_hidden,
        "num_hidden_layers": spec.vision_layers,
        "num_attention_heads": spec.vision_heads,
        "image_size": spec.image_size,
        "patch_size": spec.patch_size,
    }


def _text_kwargs(spec: ModelSpec, tokenizer) -> dict:
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": spec.text_hidden,
        "intermediate_size": spec.text_intermediate,
        "num_hidden_layers": spec.text_layers,
        "num_attention_heads": spec.text_heads,
        "num_key_value_heads": spec.text_heads,
        "max_position_embeddings": spec.max_positions,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": spec.tie_embeddings,
    }


def build_llava(spec: ModelSpec, tokenizer, seed: int):
    """Return (model, processor) of a randomly initialised LLaVA with a CLIP vision tower."""
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    image_token_id = tokenizer.convert_tokens_to_ids(tokenizer_module.IMAGE_TOKEN)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**_vision_kwargs(spec)),
        text_config=LlamaConfig(**_text_kwargs(spec, tokenizer)),
        image_token_id=image_token_id,
        # The last layer, without the CLS token: one image token per patch.
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=spec.tie_embeddings,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    _set_generation_defaults(model, tokenizer)

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": spec.image_size},
        crop_size={"height": spec.image_size, "width": spec.image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=spec.patch_size,
        vision_feature_select_strategy="default",
        chat_template=tokenizer_module.CHAT_TEMPLATE,
        image_token=tokenizer_module.IMAGE_TOKEN,
        # CLIP adds a CLS token that the "default" strategy drops again.
        num_additional_image_tokens=1,
    )
    return model, processor


def build_idefics3(spec: ModelSpec, tokenizer, seed: int):
    """Return (model, processor) of a randomly initialised Idefics3 without image splitting."""
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
        Idefics3VisionConfig,
        LlamaConfig,
    )

    scale_factor = 2
    patches_per_side = spec.image_size // spec.patch_size
    image_seq_len = (patches_per_side // scale_factor) ** 2

    config = Idefics3Config(
        vision_config=Idefics3VisionConfig(**_vision_kwargs(spec)),
        text_config=LlamaConfig(**_text_kwargs(spec, tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids(tokenizer_module.IMAGE_TOKEN),
        scale_factor=scale_factor,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=spec.tie_embeddings,
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    _set_generation_defaults(model, tokenizer)

    # Without splitting, every image becomes one square of image_size pixels.
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": spec.image_size},
        max_image_size={"longest_edge": spec.image_size},
        do_image_splitting=False,
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=tokenizer_module.CHAT_TEMPLATE,
    )
    return model, processor


def _set_generation_defaults(model, tokenizer) -> None:
    # Greedy decoding that stops at the end of the assistant turn.
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.do_sample = False


BUILDERS = {"llava": build_llava, "idefics3": build_idefics3}


def build_model(spec: ModelSpec, tokenizer, seed: int):
    """Return (model, processor) for `spec` with random weights drawn from `seed`."""
    return BUILDERS[spec.family](spec, tokenizer, seed)
