"""Accuracy of yes/no answers: P("yes") >= 0.5 when the model's probability is known, else the answer's polarity."""

from evaluation.metrics import MetricInput, register_metric
from evaluation.metrics._text import yes_no


@register_metric("accuracy", higher_is_better=True, aggregation="mean", answer_types=("yes_no",), threshold=0.5)
def accuracy(items: list[MetricInput], threshold: float) -> list[float | None]:
    """1 if the predicted class equals the gold class; None if the gold answer is neither yes nor no."""
    out = []
    for it in items:
        gold = yes_no(it.reference)
        if gold is None:
            out.append(None)
            continue
        pred = int(it.p_yes >= threshold) if it.p_yes is not None else yes_no(it.prediction)
        out.append(float(pred == gold))
    return out
