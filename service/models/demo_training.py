"""Train the demo model to answer the bundled photos, on CPU.

The demo model memorizes a handful of photos under light augmentation (crops,
flips, color jitter). Its answer depends on the prompt: a short name for the
open prompt, a class name for the closed and choice prompts (whatever class
list or options they contain), and a list of objects for the multilabel
prompt. That is enough for the service demo to return sensible labels on the
bundled photos; on any other image the answers mean nothing.

Training takes 250 steps of 24 examples on one thread: 210 s when measured on
2 cores shared with several other busy processes, less on an idle machine.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

from PIL import Image, ImageEnhance, ImageOps

from service.models.samples import DEMO_ANSWERS, sample_images
from service.protocols import prompts

logger = logging.getLogger(__name__)

_DEMO_CLASS_NAMES = sorted({answers.class_name for answers in DEMO_ANSWERS.values()})

# Photos are downscaled once to this shortest side before augmentation, because
# cropping the full-size photo at every step would dominate the training time.
_WORKING_SIDE = 96


@dataclass(frozen=True)
class TrainingSettings:
    """Optimizer and prompt-sampling settings of demo model training."""

    steps: int = 250
    batch_size: int = 24
    learning_rate: float = 3e-3
    seed: int = 0
    # Maximum class-list length of a closed prompt and maximum option count of a choice prompt.
    max_classes: int = 12
    max_options: int = 6


def _downscale(image: Image.Image) -> Image.Image:
    scale = _WORKING_SIDE / min(image.size)
    size = (round(image.width * scale), round(image.height * scale))
    return image.resize(size, Image.Resampling.BICUBIC)


def _augment(image: Image.Image, rng: random.Random) -> Image.Image:
    # Two examples in five are the plain photo, which is what the service sends.
    if rng.random() < 0.4:
        return image

    width, height = image.size
    scale = rng.uniform(0.7, 1.0)
    crop_width, crop_height = int(width * scale), int(height * scale)
    left = rng.randint(0, width - crop_width)
    top = rng.randint(0, height - crop_height)
    image = image.crop((left, top, left + crop_width, top + crop_height))

    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.8, 1.2))
    return ImageEnhance.Color(image).enhance(rng.uniform(0.8, 1.2))


def _sample_prompt(answers, class_names: list[str], settings: TrainingSettings, rng: random.Random) -> tuple[str, str]:
    """Return (prompt, target answer) for a random prompt type."""
    kind = rng.choice(("open", "closed", "choice", "multilabel"))
    if kind == "open":
        return prompts.OPEN.text, answers.open
    if kind == "multilabel":
        return prompts.MULTILABEL.text, answers.objects

    # Class lists and options contain the answer among other class names, so
    # the model learns to answer the photo's class whatever the list around it.
    # Half the time the other photos' classes are among them too, because
    # service requests often list several of them; otherwise the model would
    # learn to copy any familiar name from the list.
    limit = settings.max_classes if kind == "closed" else settings.max_options
    pool = rng.sample(class_names, limit)
    if rng.random() < 0.5:
        pool = rng.sample(_DEMO_CLASS_NAMES, min(limit, len(_DEMO_CLASS_NAMES))) + pool
    names = [name for name in dict.fromkeys(pool) if name != answers.class_name]
    names = names[: rng.randint(1, limit - 1)]
    rng.shuffle(names)
    names.insert(rng.randint(0, len(names)), answers.class_name)
    if kind == "closed":
        return prompts.CLOSED.render(classes=prompts.format_class_list(names)), answers.class_name
    return prompts.CHOICE.render(options=prompts.format_options(names)), answers.class_name


def _encode_example(processor, image: Image.Image, prompt: str, target: str) -> tuple[list[int], list[int], object]:
    """Return (input ids, labels, pixel values) with the loss on the answer and end token only."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    chat = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    encoded = processor(images=[image], text=[chat], return_tensors="pt")
    prompt_ids = encoded["input_ids"][0].tolist()

    tokenizer = processor.tokenizer
    answer_ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    labels = [-100] * len(prompt_ids) + answer_ids
    return prompt_ids + answer_ids, labels, encoded["pixel_values"][0]


def _collate(examples, pad_token_id: int):
    import torch

    length = max(len(ids) for ids, _, _ in examples)
    input_ids = torch.full((len(examples), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), length), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    # Right padding keeps positions 0..n-1 for every example, as in generation
    # from one unpadded prompt.
    for row, (ids, row_labels, _) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(row_labels)
        attention_mask[row, : len(ids)] = 1
    pixel_values = torch.stack([pixels for _, _, pixels in examples])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values, "labels": labels}


def _answer_loss(model, batch):
    """Return the cross-entropy of the answer tokens.

    The LM head runs only where labels exist, whereas `model(labels=...)` would
    compute logits over the whole vocabulary at every prompt position.
    """
    import torch

    hidden = model.model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        pixel_values=batch["pixel_values"],
    ).last_hidden_state
    # Position t predicts token t + 1.
    targets = batch["labels"][:, 1:]
    answer_positions = targets != -100
    logits = model.lm_head(hidden[:, :-1][answer_positions])
    return torch.nn.functional.cross_entropy(logits, targets[answer_positions])


def train_demo_model(model, processor, class_names: list[str], settings: TrainingSettings = TrainingSettings()) -> float:
    """Train `model` in place on the bundled photos; return the final loss."""
    import torch

    rng = random.Random(settings.seed)
    torch.manual_seed(settings.seed)

    # Train on one thread because the matrices are too small to gain from a
    # second one. On 2 cores shared with other processes, thread synchronization
    # made a step 7-10x slower: 0.65 s with 1 thread against 5-7 s with 2.
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(model, processor, class_names, settings, rng)
    finally:
        torch.set_num_threads(previous_threads)


def _train(model, processor, class_names: list[str], settings: TrainingSettings, rng: random.Random) -> float:
    import torch

    photos = {name: _downscale(image) for name, image in sample_images().items()}
    names = list(photos)

    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.learning_rate, total_steps=settings.steps, pct_start=0.1
    )
    model.train()
    started = time.perf_counter()
    loss_value = float("nan")
    for step in range(settings.steps):
        examples = []
        for _ in range(settings.batch_size):
            name = rng.choice(names)
            prompt, target = _sample_prompt(DEMO_ANSWERS[name], class_names, settings, rng)
            examples.append(_encode_example(processor, _augment(photos[name], rng), prompt, target))
        batch = _collate(examples, processor.tokenizer.pad_token_id)

        loss = _answer_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()

        loss_value = loss.item()
        if step % 50 == 0 or step == settings.steps - 1:
            logger.info("demo training step %d/%d loss %.4f", step + 1, settings.steps, loss_value)

    model.eval()
    logger.info("trained the demo model in %.1f s, final loss %.4f", time.perf_counter() - started, loss_value)
    return loss_value
