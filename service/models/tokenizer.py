"""A byte-level BPE tokenizer trained locally for the offline models.

The project builds its test and demo models without a model hub, so it also
trains their tokenizer: a small byte-level BPE on the ImageNet class names, the
protocol prompts and the demo answers. Byte-level BPE can encode any text, so
prompts with unseen words still work (as more, shorter tokens).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from service.protocols import prompts

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGENET_CLASSES_PATH = REPO_ROOT / "mapping" / "data" / "imagenet-1k.json"

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
# The end of a chat turn doubles as end of sequence, so generation stops after one answer.
EOS_TOKEN = "<|end|>"
USER_TOKEN = "<|user|>"
ASSISTANT_TOKEN = "<|assistant|>"
IMAGE_TOKEN = "<image>"
# Idefics3Processor looks these up by name; LLaVA ignores them.
IDEFICS3_TOKENS = (
    "<fake_token_around_image>",
    "<global-img>",
    "<end_of_utterance>",
    *(f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)),
)
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, USER_TOKEN, ASSISTANT_TOKEN, IMAGE_TOKEN, *IDEFICS3_TOKENS)

# One user turn contains an image part and a text part, as `apply_chat_template`
# receives them from the backend; the model answers after "<|assistant|>".
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

VOCAB_SIZE = 4096


def read_imagenet_names(path: Path = IMAGENET_CLASSES_PATH, synonyms: bool = True) -> list[str]:
    """Read the class names, and their synonyms unless `synonyms` is False, from the ImageNet-1k taxonomy file."""
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet taxonomy file {path} not found: the tokenizer corpus needs the class names it contains"
        )

    data = json.loads(path.read_text(encoding="utf-8"))
    entries = data["classes"] if isinstance(data, dict) else data
    names: list[str] = []
    for entry in entries:
        if isinstance(entry, str):
            names.append(entry)
            continue
        names.append(entry["name"])
        if synonyms:
            names.extend(entry.get("synonyms", []))
    return names


def corpus_lines(class_names: Iterable[str], answers: Iterable[str]) -> list[str]:
    """Return the training text: prompts with class lists and options, class names and answers."""
    names = list(class_names)
    lines = [prompts.OPEN.text, prompts.MULTILABEL.text]

    # Render the list prompts the way the service does, in chunks of the taxonomy,
    # so merges cover ", " separators and "A) " option prefixes.
    for start in range(0, len(names), 20):
        chunk = names[start : start + 20]
        lines.append(prompts.CLOSED.render(classes=prompts.format_class_list(chunk)))
        lines.append(prompts.CHOICE.render(options=prompts.format_options(chunk[:10])))

    lines.extend(names)
    lines.extend(answers)
    return lines


def train_tokenizer(lines: list[str], vocab_size: int = VOCAB_SIZE):
    """Train a byte-level BPE on `lines` and wrap it for transformers.

    Training is deterministic for a given corpus, so every build yields the same vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer=trainer)

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="left",
    )
    wrapped.chat_template = CHAT_TEMPLATE
    logger.info("trained tokenizer with %d tokens on %d lines", len(wrapped), len(lines))
    return wrapped
