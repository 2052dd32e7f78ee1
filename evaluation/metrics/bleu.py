"""Sentence BLEU (sacrebleu, exponential smoothing, effective order) scaled to [0, 1]."""

from evaluation.metrics import MetricInput, register_metric


@register_metric("bleu", higher_is_better=True, aggregation="mean", answer_types=("text",))
def bleu(items: list[MetricInput]) -> list[float]:
    """sacrebleu.sentence_bleu(pred, [ref]).score / 100 per item; the task figure is the mean over items."""
    import sacrebleu

    return [sacrebleu.sentence_bleu(it.prediction or "", [it.reference or ""]).score / 100.0 for it in items]
