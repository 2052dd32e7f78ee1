"""Brier score of yes/no risk scores: (P("yes") - gold)^2 per item, averaged (lower is better)."""

from evaluation.metrics import MetricInput, register_metric
from evaluation.metrics._text import yes_no


@register_metric("brier", higher_is_better=False, aggregation="mean", answer_types=("yes_no",))
def brier(items: list[MetricInput]) -> list[float | None]:
    """(P("yes") - y)^2; None without a probability (generated answers) or a yes/no reference."""
    out = []
    for it in items:
        gold = yes_no(it.reference)
        out.append(None if gold is None or it.p_yes is None else (it.p_yes - gold) ** 2)
    return out
