"""Precision / recall / F1 of a list answer against the reference list (items normalised, compared as sets)."""

from __future__ import annotations

from evaluation.metrics._text import parse_set


def prf(prediction: str, reference: str) -> tuple[float, float, float] | None:
    gold = parse_set(reference)
    pred = parse_set(prediction)
    if not gold and not pred:
        return 1.0, 1.0, 1.0
    if not gold:
        return None
    tp = len(gold & pred)
    p = tp / len(pred) if pred else 0.0
    r = tp / len(gold)
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f
