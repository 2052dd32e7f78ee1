"""Numeric match: the first number in the prediction is within tolerance of the reference number."""

import math

from evaluation.metrics import MetricInput, register_metric
from evaluation.metrics._text import first_number


@register_metric("numeric_match", higher_is_better=True, aggregation="mean", answer_types=("number",),
                 rel_tol=0.05, abs_tol=0.5)
def numeric_match(items: list[MetricInput], rel_tol: float, abs_tol: float) -> list[float | None]:
    """1 if |pred - ref| <= max(rel_tol * |ref|, abs_tol); 0 if no number was given; None if the reference has none."""
    out = []
    for it in items:
        ref = first_number(it.reference)
        if ref is None:
            out.append(None)
            continue
        pred = first_number(it.prediction)
        out.append(0.0 if pred is None else float(math.isclose(pred, ref, rel_tol=rel_tol, abs_tol=abs_tol)))
    return out
