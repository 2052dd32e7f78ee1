"""ROUGE-L F1 (rouge-score, Porter stemming) of the prediction against the reference."""

import functools

from evaluation.metrics import MetricInput, register_metric


@functools.lru_cache(maxsize=4)
def scorer(kind: str, stem: bool):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], use_stemmer=stem)


@register_metric("rouge_l", higher_is_better=True, aggregation="mean", answer_types=("text",))
def rouge_l(items: list[MetricInput]) -> list[float]:
    """ROUGE-L F-measure per item (longest common subsequence of tokens)."""
    sc = scorer("rougeL", True)
    return [sc.score(it.reference or "", it.prediction or "")["rougeL"].fmeasure for it in items]
