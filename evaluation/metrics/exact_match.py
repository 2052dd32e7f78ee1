"""Exact match after SQuAD-style normalisation (case, punctuation, articles, whitespace)."""

from evaluation.metrics import MetricInput, register_metric
from evaluation.metrics._text import normalize, parse_set, yes_no


@register_metric("exact_match", higher_is_better=True, aggregation="mean",
                 answer_types=("yes_no", "number", "set", "text"))
def exact_match(items: list[MetricInput]) -> list[float]:
    """1 if the normalised prediction equals the normalised reference (yes/no by polarity, lists as sets)."""
    out = []
    for it in items:
        if it.answer_type == "yes_no":
            gold, pred = yes_no(it.reference), yes_no(it.prediction)
            out.append(None if gold is None else float(pred == gold))
        elif it.answer_type == "set":
            out.append(float(parse_set(it.prediction) == parse_set(it.reference)))
        else:
            out.append(float(normalize(it.prediction) == normalize(it.reference)))
    return out
