"""ROUGE-5 F-measure of a generated note against the reference note: long verbatim runs shared with the real note.

Used for synthetic notes (Asclepius-style): a high value means the generated note reproduces 5-token runs of the
real one (fidelity when intended, a privacy warning when the model was meant to paraphrase)."""

from evaluation.metrics import MetricInput, register_metric
from evaluation.metrics.rouge_l import scorer


@register_metric("rouge5", higher_is_better=True, aggregation="mean", answer_types=("note",))
def rouge5(items: list[MetricInput]) -> list[float]:
    """ROUGE-5 F-measure of prediction against reference (rouge-score, no stemming)."""
    sc = scorer("rouge5", False)
    return [sc.score(it.reference or "", it.prediction or "")["rouge5"].fmeasure for it in items]
