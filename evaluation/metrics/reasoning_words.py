"""Length of the reasoning a model wrote before its answer (thinking section / lines before `Answer:`), in words.

Not a default metric of any answer type: the runner adds it to every item of a run in which any output had
reasoning (ehrforge.answers.parse_response), so reasoning models report it and plain ones do not."""

from evaluation.metrics import MetricInput, register_metric


@register_metric("reasoning_words", higher_is_better=False, aggregation="mean", answer_types=())
def reasoning_words(items: list[MetricInput]) -> list[float]:
    """Words of reasoning before the scored answer (0 when the output had none)."""
    return [float(len((it.reasoning or "").split())) for it in items]
