"""AUPRC (average precision) of P("yes") against the gold label (scikit-learn average_precision_score)."""

from evaluation.metrics import MetricInput, register_metric


@register_metric("auprc", higher_is_better=True, aggregation="auprc", answer_types=("yes_no",))
def auprc(items: list[MetricInput]) -> list[float | None]:
    """Item value = P("yes"); the task figure is average_precision_score(labels, values)."""
    return [it.p_yes for it in items]
