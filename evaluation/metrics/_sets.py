"""Precision / recall / F1 of a list answer against the reference list (ehrforge.answers.set_prf)."""

from __future__ import annotations

from ehrforge.answers import set_prf


def prf(prediction: str, reference: str) -> tuple[float, float, float] | None:
    return set_prf(prediction, reference)
