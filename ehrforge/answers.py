"""The one answer verifier, shared by synthesis (reasoning chains), training (GRPO rewards) and evaluation (metrics).

    from ehrforge.answers import verify, split_final_answer, with_thinking, strip_thinking
    v = verify("Answer: 4.2", "4.2", "number")      # Verdict(score=1.0, is_correct=True, ...)
    thinking, answer = strip_thinking("<think>K is high</think>\nyes")   # ('K is high', 'yes')

Normalisation is SQuAD-style (lower case, no punctuation, no articles, single spaces). Per answer type:
yes_no by polarity of the first word; number by the first number within max(rel_tol * |ref|, abs_tol); set by F1 of
the normalised items (a JSON array, or items separated by ; , newlines or bullets); text by normalised equality.
`is_correct` is score == 1 (an exact set, a number within tolerance), which is what a reasoning chain must reach
to be kept. Evaluation's exact_match / numeric_match / set_f1 / accuracy metrics call these same functions.

A thinking section is `<think>...</think>` before the answer: reasoning rows carry it in the answer column (it is
rendered through the chat template like any assistant text), and evaluation strips it before scoring.
"""

from __future__ import annotations

import json
import math
import re
import string
from dataclasses import dataclass

NUMERIC_REL_TOL = 0.05
NUMERIC_ABS_TOL = 0.5

THINK_START, THINK_END = "<think>", "</think>"
FINAL_ANSWER_PREFIX = "Answer:"

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:[.,]\d+)*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")
_YES = {"yes", "y", "true", "1", "positive"}
_NO = {"no", "n", "false", "0", "negative"}
_THINK = re.compile(re.escape(THINK_START) + r"(.*?)(?:" + re.escape(THINK_END) + r"|$)", re.S)
_FINAL = re.compile(r"^\s*(?:\**\s*)?(?:final\s+)?answer\s*(?:\**\s*)?[:\-]\s*(.*)$", re.I | re.M)


# ------------------------------------------------------------------------------------------ normalisation


def normalize(text: str | None) -> str:
    text = (text or "").lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def tokens(text: str | None) -> list[str]:
    return normalize(text).split()


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
    if text.startswith("["):
        try:
            loaded = json.loads(text)
            if isinstance(loaded, list):
                return {normalize(str(i)) for i in loaded if normalize(str(i))}
        except json.JSONDecodeError:
            pass
    items = re.split(r"[;,\n]|^\s*[-*•]\s*", text, flags=re.M)
    return {normalize(i) for i in items if normalize(i)}


def set_prf(prediction: str, reference: str) -> tuple[float, float, float] | None:
    """Precision, recall, F1 of a list answer against the reference list; None when the reference is empty and
    the prediction is not."""
    gold, pred = parse_set(reference), parse_set(prediction)
    if not gold and not pred:
        return 1.0, 1.0, 1.0
    if not gold:
        return None
    tp = len(gold & pred)
    p = tp / len(pred) if pred else 0.0
    r = tp / len(gold)
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def numbers_match(prediction: str | None, reference: str | None, rel_tol: float = NUMERIC_REL_TOL,
                  abs_tol: float = NUMERIC_ABS_TOL) -> float | None:
    """1.0 if the first number of the prediction is within tolerance of the reference's; 0.0 if the prediction has
    no number; None if the reference has none."""
    ref = first_number(reference)
    if ref is None:
        return None
    pred = first_number(prediction)
    return 0.0 if pred is None else float(math.isclose(pred, ref, rel_tol=rel_tol, abs_tol=abs_tol))


# ------------------------------------------------------------------------------------------------ verdicts


@dataclass(frozen=True)
class Verdict:
    score: float | None      # in [0, 1]; None when the reference itself is not scorable for its type
    is_correct: bool         # score == 1
    kind: str                # which check scored it: yes_no / numeric / set_f1 / exact


def verify(prediction: str | None, reference: str, answer_type: str) -> Verdict:
    """Score a final answer (no thinking section; see `strip_thinking`) against the gold answer of its type."""
    prediction = prediction or ""
    if answer_type == "yes_no":
        gold, pred = yes_no(reference), yes_no(prediction)
        score = None if gold is None else float(pred == gold)
        kind = "yes_no"
    elif answer_type == "number":
        score, kind = numbers_match(prediction, reference), "numeric"
        if score is None:  # a "number" answer without digits (e.g. "none"): exact text
            score, kind = float(normalize(prediction) == normalize(reference)), "exact"
    elif answer_type == "set":
        prf = set_prf(prediction, reference)
        score, kind = (None if prf is None else prf[2]), "set_f1"
    else:
        score, kind = float(normalize(prediction) == normalize(reference)), "exact"
    return Verdict(score=score, is_correct=score is not None and score >= 1.0 - 1e-9, kind=kind)


# ------------------------------------------------------------------------------------------ thinking / format


def with_thinking(thinking: str, answer: str) -> str:
    """An assistant turn with a thinking section: `<think>\\n...\\n</think>\\n<answer>`."""
    return f"{THINK_START}\n{thinking.strip()}\n{THINK_END}\n{answer.strip()}"


def strip_thinking(text: str | None) -> tuple[str | None, str]:
    """(thinking or None, the rest). An unclosed `<think>` swallows the whole text (no answer was given)."""
    text = text or ""
    m = _THINK.search(text)
    if not m:
        return None, text.strip()
    return m.group(1).strip(), (text[: m.start()] + text[m.end():]).strip()


def split_final_answer(text: str | None) -> tuple[str, str | None]:
    """(reasoning, final answer or None) of a chain that ends with a line `Answer: ...` (the last such line; a
    thinking section, if any, counts as reasoning)."""
    thinking, rest = strip_thinking(text)
    matches = list(_FINAL.finditer(rest))
    if not matches:
        if thinking is not None and rest:  # "<think>...</think>\nyes": the text after the section is the answer
            return thinking, rest.splitlines()[-1].strip() if "\n" in rest else rest
        return (thinking or rest), None
    last = matches[-1]
    answer = last.group(1).strip().strip("*").strip()
    reasoning = "\n".join(p for p in (thinking or "", rest[: last.start()].strip()) if p).strip()
    return reasoning, (answer or None)


def parse_response(text: str | None) -> tuple[str | None, str]:
    """(reasoning or None, final answer) of a model's output, as evaluation scores it and GRPO rewards it: a thinking
    section and the lines before a final `Answer:` line are reasoning; without either, the whole text is the answer."""
    thinking, rest = strip_thinking(text)
    matches = list(_FINAL.finditer(rest))
    if not matches:
        return thinking, rest
    last = matches[-1]
    reasoning = "\n".join(p for p in (thinking or "", rest[: last.start()].strip()) if p).strip()
    return (reasoning or None), last.group(1).strip().strip("*").strip()


def format_score(text: str | None) -> float:
    """Format reward in [0, 1]: 0.5 for a final `Answer:` line with something after it, 0.5 more for some
    reasoning before it (at least 3 words); nothing may follow the answer but its own line."""
    reasoning, answer = split_final_answer(text)
    if answer is None:
        return 0.0
    score = 0.5
    if len(reasoning.split()) >= 3:
        score += 0.5
    return score
