"""Privacy: share of the generated text's 8-grams that occur verbatim in the real text (reference + context).

Memorisation audits of clinical generators count long exact n-gram matches with the source records; any 8-gram
copy is a span of patient text reproduced word for word. Lower is better."""

from evaluation.metrics import MetricInput, register_metric
from evaluation.metrics._text import tokens


def ngrams(toks: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)]


@register_metric("ngram8_overlap", higher_is_better=False, aggregation="mean", answer_types=("note",), n=8)
def ngram8_overlap(items: list[MetricInput], n: int) -> list[float | None]:
    """|pred n-grams found in (reference + context)| / |pred n-grams|; None if the prediction is shorter than n."""
    out = []
    for it in items:
        pred = ngrams(tokens(it.prediction), n)
        if not pred:
            out.append(None)
            continue
        real = set(ngrams(tokens(it.reference), n)) | set(ngrams(tokens(it.context), n))
        out.append(sum(g in real for g in pred) / len(pred))
    return out
