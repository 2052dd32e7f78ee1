"""Numeric match: the first number in the prediction is within tolerance of the reference number."""

from ehrforge.answers import NUMERIC_ABS_TOL, NUMERIC_REL_TOL, numbers_match
from evaluation.metrics import MetricInput, register_metric


@register_metric("numeric_match", higher_is_better=True, aggregation="mean", answer_types=("number",),
                 rel_tol=NUMERIC_REL_TOL, abs_tol=NUMERIC_ABS_TOL)
def numeric_match(items: list[MetricInput], rel_tol: float, abs_tol: float) -> list[float | None]:
    """1 if |pred - ref| <= max(rel_tol * |ref|, abs_tol); 0 if no number was given; None if the reference has none."""
    return [numbers_match(it.prediction, it.reference, rel_tol, abs_tol) for it in items]
