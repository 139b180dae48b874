"""Parsing of free-form model answers before they are matched to classes.

`parse_answer` strips the wrappers chat models put around a class name
("This image shows ...", "Answer: ...", markdown, quotes, a trailing period),
recognizes refusals and non-answers as an explicit abstain, and derives the
lookup keys the mapper tries in order. `split_answers` cuts list answers into
one item per object, and `parse_option_letter` reads multiple-choice letters.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from mapping.normalize import normalize_text, strip_count

# Answers longer than this are cut before parsing, so a runaway generation costs
# bounded time. Class names are far shorter; the raw text is kept unchanged.
MAX_PARSE_CHARS = 2000

_MARKDOWN = re.compile(r"[*_`#>~]+")
_QUOTES = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb"
# Phrases that introduce the answer. Applied repeatedly from the start of the
# text, so "Answer: I think it is a cat" loses both "Answer:" and "I think it is".
_PREFIX = re.compile(
    r"^\s*(?:"
    r"(?:final\s+)?answer\s*[:\-]|the\s+(?:final\s+)?answer\s+is\s*:?|my\s+answer\s+is\s*:?|"
    r"label\s*:|class\s*:|category\s*:|prediction\s*:|output\s*:|"
    r"(?:i\s+think|i\s+believe|i\s+guess|probably|perhaps|maybe|likely|most\s+likely|definitely|clearly)\s*,?|"
    r"(?:this|the|that)\s+(?:image|picture|photo|photograph)\s+(?:shows|depicts|contains|features|is\s+of|is)|"
    r"(?:the\s+)?(?:main|primary)\s+(?:object|subject)\s+(?:in\s+(?:the|this)\s+(?:image|picture|photo)\s+)?is|"
    r"(?:the\s+)?(?:object|subject)\s+(?:in\s+(?:the|this)\s+(?:image|picture|photo)\s+)?is|"
    r"(?:this|that|it)\s+(?:is|looks\s+like|appears\s+to\s+be|seems\s+to\s+be)|"
    r"(?:this|it)'s|(?:it|this)\s+could\s+be|"
    r"(?:there\s+is|there\s+are|there's|i\s+see|i\s+can\s+see|we\s+see|you\s+can\s+see)|"
    r"(?:an?\s+)?(?:image|picture|photo|photograph)\s+of|"
    r"(?:a|an)\s+(?:close[\s-]?up|closeup)\s+of|close[\s-]?up\s+of"
    r")\s*",
    re.IGNORECASE,
)
_SUFFIX = re.compile(
    r"\s*(?:in\s+(?:the|this)\s+(?:image|picture|photo|photograph)|is\s+shown|is\s+visible)\s*$",
    re.IGNORECASE,
)
_TRAILING_PUNCT = re.compile(r"[\s.!?;:,]+$")

# Whole answers that carry no class ("unknown", "n/a", "?"), checked on the
# normalized key.
_NON_ANSWERS = frozenset(
    {
        "", "unknown", "none", "nothing", "n a", "na", "no answer", "no idea", "not sure", "unsure",
        "unclear", "idk", "dont know", "i dont know", "cannot tell", "cant tell", "i cant tell",
        "i cannot tell", "not applicable", "undetermined", "unidentifiable", "nothing in particular",
        "no object", "no objects", "other", "unknown object", "i am not sure", "im not sure",
        "cannot determine", "cant determine", "hard to say", "hard to tell", "impossible to tell",
    }
)
# Refusal openings; the rest of the sentence does not matter unless it carries
# a hedged answer after "but" ("I'm not sure, but it looks like a cat").
_REFUSAL = re.compile(
    r"^\s*(?:i\s*(?:'m|am)\s+(?:sorry|unable|not\s+able|not\s+sure|not\s+certain|afraid)|sorry\b|"
    r"i\s+(?:can\s*not|can't|cannot|couldn't|could\s+not|don't|do\s+not|won't)\s+"
    r"(?:tell|determine|identify|see|know|say|recognize|classify|answer|help|make\s+out|be\s+sure)|"
    r"as\s+an\s+ai\b|it\s+is\s+(?:not\s+possible|impossible|hard|difficult|unclear)|"
    r"it's\s+(?:not\s+possible|impossible|hard|difficult|unclear)|"
    r"(?:the\s+)?image\s+is\s+(?:too\s+)?(?:blurry|unclear|dark|empty|blank|not\s+clear)|"
    r"there\s+is\s+no(?:thing)?\b|no\s+(?:object|image|animal)\b)",
    re.IGNORECASE,
)
_HEDGE = re.compile(r"\bbut\s+(?:it\s+)?(?:(?:might|may|could)\s+be|looks?\s+like|seems?\s+(?:to\s+be|like)|probably|i\s+think)\s+", re.IGNORECASE)

# Words that start trailing context after the object name ("a cat sitting on
# a laptop"). The text before the first of them is the head phrase; the mapper
# tries the full text first, so no class name is cut.
_CONTEXT_WORD = re.compile(
    r"\s(?:sitting|standing|lying|laying|playing|running|walking|flying|swimming|eating|holding|wearing|"
    r"looking|perched|parked|resting|sleeping|floating|hanging|covered|made|placed|shown|seen|"
    r"on|in|with|under|at|by|behind|beside|near|next|against|inside|over|that|which|who|while|"
    r"from|during|among|between|above|below|into|onto|and|or)\s"
)

# Separators of list answers. Commas, semicolons, slashes and line breaks
# always split. The words "and", "&", "plus" and "as well as" split too, unless
# they belong to a protected phrase such as the class name "mortar and pestle".
_BULLET = re.compile(r"^\s*(?:[-*+\u2022]|\d+[.)]|[a-z][.)])\s+", re.IGNORECASE)
_STRONG_SEPARATOR = re.compile(r"\s*(?:[,;/|\n]|\s-\s)\s*")
_WEAK_SEPARATOR = re.compile(r"\s+(?:and|&|plus|as\s+well\s+as|along\s+with|together\s+with)\s+", re.IGNORECASE)

# Multiple-choice letters. A bare letter may carry brackets or a period ("B",
# "(b)", "B."); after an "Answer:"-style prefix or before option text it needs
# a closing bracket or separator unless it is uppercase, so "a cat" and
# "I think" are never read as letters.
_LETTER_ONLY = re.compile(r"^[(\[]?([A-Za-z])[)\].:]?$")
_LETTER_PREFIX = re.compile(
    r"^(?:the\s+)?(?:final\s+|correct\s+)?(?:answer|option|choice|letter)(?:\s+is)?\s*[:\-]?\s*", re.IGNORECASE
)
_LETTER_WITH_TEXT = re.compile(r"^(?:[(\[]([A-Za-z])[)\]]|([A-Za-z])[)\]]|([A-Z])\s*[.:\-])(?:\s|$)")
_LETTER_UPPER_ALONE = re.compile(r"^([A-Z])(?:$|,|\s+(?:because|since|as)\b)")

@dataclass(frozen=True, slots=True)
class ParsedAnswer:
    """An answer after wrapper removal, with the keys the mapper tries in order.

    `text` is the cleaned answer in its original case; `normalized` is its match
    key; `keys` lists `normalized`, then the key without a leading count, then
    the head phrase before trailing context, without duplicates. An abstain has
    no keys.
    """

    raw: str
    text: str
    normalized: str
    keys: tuple[str, ...]
    abstain: bool


def _strip_wrappers(text: str) -> str:
    text = _MARKDOWN.sub(" ", text).strip().strip(_QUOTES).strip()
    for _ in range(4):
        stripped = _PREFIX.sub("", text, count=1).strip().strip(_QUOTES).strip()
        if stripped == text:
            break
        text = stripped
    text = _TRAILING_PUNCT.sub("", text)
    text = _SUFFIX.sub("", text)
    return text.strip().strip(_QUOTES).strip()


def _head_phrase(key: str) -> str:
    match = _CONTEXT_WORD.search(key)
    return key[: match.start()] if match else key


def is_refusal(text: str) -> bool:
    """Return True when `text` declines to answer or names no object."""
    if _REFUSAL.match(text):
        return _HEDGE.search(text) is None
    return is_non_answer_key(normalize_text(text))


def is_non_answer_key(key: str) -> bool:
    """Return True when a normalized answer is a whole non-answer ("unknown", "n a", "")."""
    return key in _NON_ANSWERS


def _hedged_answer(text: str) -> str | None:
    """Return the answer after a hedge ("I'm not sure, but it looks like X" -> "X"), if any."""
    if not _REFUSAL.match(text):
        return None
    match = _HEDGE.search(text)
    return text[match.end():] if match else None


def parse_answer(answer: str) -> ParsedAnswer:
    """Clean one answer, decide whether it abstains and derive its lookup keys."""
    raw = answer
    text = answer[:MAX_PARSE_CHARS].strip()

    # Use only the first line of a multi-line answer that is not a list; models
    # often add an explanation after the name.
    first_line = text.split("\n", 1)[0]
    if first_line.strip():
        text = first_line

    hedged = _hedged_answer(text)
    if hedged is not None:
        text = hedged
    # Check before and after wrapper removal: "The image is too blurry" loses
    # "The image is" to the wrapper pattern.
    refused = hedged is None and is_refusal(text)
    text = _strip_wrappers(text)

    if refused or is_refusal(text):
        return ParsedAnswer(raw=raw, text=text, normalized=normalize_text(text), keys=(), abstain=True)

    normalized = normalize_text(text)
    if not normalized:
        return ParsedAnswer(raw=raw, text=text, normalized="", keys=(), abstain=True)

    keys = [normalized]
    without_count = strip_count(normalized)
    for key in (without_count, _head_phrase(without_count)):
        if key and key not in keys:
            keys.append(key)
    return ParsedAnswer(raw=raw, text=text, normalized=normalized, keys=tuple(keys), abstain=False)


def _protect(part: str, protected: Collection[str]) -> tuple[str, dict[str, str]]:
    """Replace protected phrases that contain a weak separator with placeholders."""
    replacements: dict[str, str] = {}
    lowered = part.lower()
    for number, phrase in enumerate(protected):
        start = lowered.find(phrase)
        if start < 0:
            continue
        placeholder = f"\x00{number}\x00"
        replacements[placeholder] = part[start : start + len(phrase)]
        part = part[:start] + placeholder + part[start + len(phrase) :]
        lowered = part.lower()
    return part, replacements


def split_answers(text: str, protected: Collection[str] = ()) -> list[str]:
    """Split a list answer into one string per item.

    Splits on line breaks, bullets, commas, semicolons and slashes, then on
    "and", "&" and "plus" inside each piece. `protected` holds lowercase phrases
    that contain such a word but name one thing ("mortar and pestle"); they are
    never split. Empty items are dropped; the order of the answer is kept.
    """
    text = text[:MAX_PARSE_CHARS]
    pieces: list[str] = []
    for line in text.splitlines():
        line = _BULLET.sub("", line)
        for piece in _STRONG_SEPARATOR.split(line):
            piece, replacements = _protect(piece, protected)
            for item in _WEAK_SEPARATOR.split(piece):
                for placeholder, phrase in replacements.items():
                    item = item.replace(placeholder, phrase)
                item = _strip_wrappers(item)
                if item:
                    pieces.append(item)
    return pieces


def parse_option_letter(answer: str, num_options: int) -> int | None:
    """Return the 0-based option index named by a letter answer, or None.

    Accepted forms: "B", "(B)", "B.", "b", "B) lynx", "B: lynx", "Answer: B",
    "The answer is B) lynx", "Option B", "**B**". Letters past `num_options`
    return None.
    """
    text = _MARKDOWN.sub(" ", answer[:MAX_PARSE_CHARS]).strip().strip(_QUOTES).strip()
    text = _TRAILING_PUNCT.sub("", text) if len(text) > 2 else text

    letter: str | None = None
    match = _LETTER_ONLY.match(text)
    if match:
        letter = match.group(1)
    else:
        prefix = _LETTER_PREFIX.match(text)
        rest = text[prefix.end():] if prefix else text
        match = _LETTER_WITH_TEXT.match(rest) or _LETTER_ONLY.match(rest)
        if match:
            letter = next(group for group in match.groups() if group)
        elif prefix:
            # After "The answer is", an uppercase letter needs no bracket ("The answer is B").
            match = _LETTER_UPPER_ALONE.match(rest)
            letter = match.group(1) if match else None

    if letter is None:
        return None
    index = ord(letter.upper()) - ord("A")
    return index if index < num_options else None
