"""AUROC of P("yes") against the gold yes/no label (scikit-learn roc_auc_score over the task's items)."""

from evaluation.metrics import MetricInput, register_metric


@register_metric("auroc", higher_is_better=True, aggregation="auroc", answer_types=("yes_no",))
def auroc(items: list[MetricInput]) -> list[float | None]:
    """Item value = P("yes"); the task figure is roc_auc_score(labels, values) (None if one class only)."""
    return [it.p_yes for it in items]
