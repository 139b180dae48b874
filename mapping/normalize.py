"""Text normalization shared by class names and model answers.

Both sides go through the same functions, so an answer matches a class name
exactly when their normalized keys are equal. The rules are deliberately
simple and deterministic: case folding, accent folding, punctuation to spaces,
leading articles and counts dropped, and an English singular form of the last
word as a second key.
"""

from __future__ import annotations

import re
import unicodedata

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_APOSTROPHES = str.maketrans("", "", "'\u2019`")
_LEADING_ARTICLE = re.compile(r"^(?:a|an|the)\s+")
_ARTICLE_STARTS = ("a ", "an ", "the ")
# Counts and quantity phrases in front of a noun ("two dogs", "a group of
# geese"). Stripping them gives an extra lookup key; the full text is tried first
# so a class such as "three-toed sloth" still matches as written.
_LEADING_COUNT = re.compile(
    r"^(?:(?:a|an|the)\s+)?"
    r"(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|several|many|multiple|"
    r"numerous|some|few|a few|couple of|a couple of|pair of|a pair of|group of|a group of|"
    r"bunch of|a bunch of|lot of|a lot of|lots of)\s+"
)

# Irregular English plurals that occur in ImageNet-style class names.
_IRREGULAR_PLURALS = {
    "wolves": "wolf",
    "knives": "knife",
    "leaves": "leaf",
    "loaves": "loaf",
    "geese": "goose",
    "mice": "mouse",
    "men": "man",
    "women": "woman",
    "children": "child",
    "teeth": "tooth",
    "feet": "foot",
    "oxen": "ox",
    "people": "person",
    "cacti": "cactus",
    "fungi": "fungus",
    "octopi": "octopus",
    "octopuses": "octopus",
    "buses": "bus",
    "dice": "die",
}
# Words that end in "s" in the singular; stripping the "s" would break them.
_SINGULAR_ENDINGS = ("ss", "us", "is", "ous", "ics")


def fold_text(text: str) -> str:
    """Lowercase `text`, drop accents and apostrophes, and turn other punctuation into single spaces."""
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(char for char in decomposed if not unicodedata.combining(char))
    folded = text.lower().translate(_APOSTROPHES)
    return _NON_ALNUM.sub(" ", folded).strip()


def normalize_text(text: str) -> str:
    """Return the match key of `text`: folded, with one leading article removed."""
    folded = fold_text(text)
    if folded.startswith(_ARTICLE_STARTS):
        return _LEADING_ARTICLE.sub("", folded, count=1)
    return folded


def strip_count(key: str) -> str:
    """Drop a leading count or quantity phrase from a normalized key ("two dogs" -> "dogs")."""
    return _LEADING_COUNT.sub("", key, count=1)


def singularize_word(word: str) -> str:
    """Return a singular form of an English noun by suffix rules; unknown forms come back unchanged."""
    irregular = _IRREGULAR_PLURALS.get(word)
    if irregular is not None:
        return irregular
    if len(word) <= 3 or not word.endswith("s") or word.endswith(_SINGULAR_ENDINGS):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes", "zes")):
        return word[:-2]
    return word[:-1]


def singular_key(key: str) -> str:
    """Singularize the last word of a normalized key ("tabby cats" -> "tabby cat")."""
    head, _, last = key.rpartition(" ")
    singular = singularize_word(last)
    if singular == last:
        return key
    return f"{head} {singular}" if head else singular
