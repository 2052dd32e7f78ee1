"""Normalisation shared by the metrics (SQuAD-style: lower case, no punctuation, no articles, single spaces)."""

from __future__ import annotations

import json
import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:[.,]\d+)*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")
_YES = {"yes", "y", "true", "1", "positive"}
_NO = {"no", "n", "false", "0", "negative"}


def normalize(text: str | None) -> str:
    text = (text or "").lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def yes_no(text: str | None) -> int | None:
    """1 for a yes, 0 for a no, None if the text starts with neither ("Yes, because..." is a yes)."""
    words = normalize(text).split()
    if not words:
        return None
    if words[0] in _YES:
        return 1
    if words[0] in _NO:
        return 0
    return None


def first_number(text: str | None) -> float | None:
    m = _NUMBER.search(text or "")
    if not m:
        return None
    raw = m.group(0)
    # "1,234" is a thousands separator, "3,5" a decimal comma
    if "," in raw and "." not in raw and re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+", raw) is None:
        raw = raw.replace(",", ".")
    try:
        return float(raw.replace(",", ""))
    except ValueError:
        return None


def parse_set(text: str | None) -> set[str]:
    """A list answer as a set of normalised items: a JSON list, or items separated by ; , newlines or bullets."""
    text = (text or "").strip()
    items: list[str]
    if text.startswith("["):
        try:
            loaded = json.loads(text)
            if isinstance(loaded, list):
                items = [str(x) for x in loaded]
                return {normalize(i) for i in items if normalize(i)}
        except json.JSONDecodeError:
            pass
    items = re.split(r"[;,\n]|^\s*[-*•]\s*", text, flags=re.M)
    return {normalize(i) for i in items if normalize(i)}


def tokens(text: str | None) -> list[str]:
    return normalize(text).split()
