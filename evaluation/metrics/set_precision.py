"""Set precision of a list answer (items normalised; separators ; , newline or a JSON list)."""

from evaluation.metrics import MetricInput, register_metric
from evaluation.metrics._sets import prf


@register_metric("set_precision", higher_is_better=True, aggregation="mean", answer_types=("set",))
def set_precision(items: list[MetricInput]) -> list[float | None]:
    """Set precision per item; None when the reference list is empty but the prediction is not."""
    out = []
    for it in items:
        s = prf(it.prediction, it.reference)
        out.append(None if s is None else s[0])
    return out
