"""Set recall of a list answer (items normalised; separators ; , newline or a JSON list)."""

from evaluation.metrics import MetricInput, register_metric
from evaluation.metrics._sets import prf


@register_metric("set_recall", higher_is_better=True, aggregation="mean", answer_types=("set",))
def set_recall(items: list[MetricInput]) -> list[float | None]:
    """Set recall per item; None when the reference list is empty but the prediction is not."""
    out = []
    for it in items:
        s = prf(it.prediction, it.reference)
        out.append(None if s is None else s[1])
    return out
