"""Expected calibration error of P("yes"): 10 equal-width bins, |observed rate - mean P| weighted by bin size."""

from evaluation.metrics import MetricInput, register_metric


@register_metric("ece", higher_is_better=False, aggregation="ece", answer_types=("yes_no",))
def ece(items: list[MetricInput]) -> list[float | None]:
    """Item value = P("yes") (the label is the gold class); the task figure is the ECE over the task's items."""
    return [it.p_yes for it in items]
