"""Every metric on hand-written predictions whose scores are known by hand."""

from __future__ import annotations

import math

import pytest

from evaluation.aggregate import aggregate_with_ci
from evaluation.metrics import MetricInput, all_metrics, default_metrics, get_metric


def score(name, pairs, answer_type="text", p_yes=None, context="", **params):
    items = [MetricInput(prediction=p, reference=r, answer_type=answer_type, context=context,
                         p_yes=None if p_yes is None else p_yes[i]) for i, (p, r) in enumerate(pairs)]
    return get_metric(name).score(items, **params)


def test_registry_lists_every_metric_with_direction_and_aggregation():
    names = set(all_metrics())
    assert {"exact_match", "numeric_match", "set_precision", "set_recall", "set_f1", "accuracy", "auroc", "auprc",
            "rouge_l", "bleu", "embedding_similarity", "rouge5", "ngram8_overlap"} <= names
    assert get_metric("ngram8_overlap").higher_is_better is False
    assert get_metric("auroc").aggregation == "auroc"
    assert set(default_metrics("yes_no")) == {"exact_match", "accuracy", "auroc", "auprc", "brier", "ece"}
    assert get_metric("brier").higher_is_better is False and get_metric("ece").aggregation == "ece"
    assert get_metric("pass_hat_k").kind == "consistency" and "pass_at_k" not in default_metrics("yes_no")
    with pytest.raises(Exception, match="unknown metric"):
        get_metric("nope")


def test_exact_match_normalises_case_punctuation_articles_and_polarity():
    assert score("exact_match", [("The Sepsis.", "sepsis"), ("sepsis shock", "septic shock")]) == [1.0, 0.0]
    assert score("exact_match", [("Yes, clearly", "yes"), ("no", "Yes"), ("maybe", "no")], "yes_no") == [1.0, 0.0, 0.0]
    assert score("exact_match", [("b; a", "a, b"), ("a", "a; b")], "set") == [1.0, 0.0]


def test_numeric_match_with_tolerance():
    vals = score("numeric_match", [("about 4.1 days", "4.0"), ("7", "4.0"), ("unknown", "4.0"), ("3", "n/a"),
                                   ("1,234", "1234"), ("3,5", "3.5")], "number")
    assert vals == [1.0, 0.0, 0.0, None, 1.0, 1.0]
    assert score("numeric_match", [("4.1", "4.0")], "number", rel_tol=0.0, abs_tol=0.05) == [0.0]


def test_set_precision_recall_f1():
    pairs = [("Sodium; Potassium; Glucose", "sodium; potassium; chloride; lactate"), ("", "a; b"), ("x", "")]
    p = score("set_precision", pairs, "set")
    r = score("set_recall", pairs, "set")
    f = score("set_f1", pairs, "set")
    assert p[0] == pytest.approx(2 / 3) and r[0] == pytest.approx(2 / 4)
    assert f[0] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert (p[1], r[1], f[1]) == (0.0, 0.0, 0.0)
    assert p[2] is None  # empty reference, non-empty prediction: not scorable
    assert score("set_f1", [('["a", "b"]', "b, a")], "set") == [1.0]


def test_accuracy_uses_probability_then_polarity():
    pairs = [("no", "yes"), ("no", "no"), ("yes", "no"), ("yes", "maybe")]
    assert score("accuracy", pairs, "yes_no", p_yes=[0.7, 0.2, None, 0.9]) == [1.0, 1.0, 0.0, None]


def test_auroc_auprc_match_hand_computed_values():
    # labels 1,1,0,0 with P(yes) .9 .4 .6 .1: pairs (pos, neg) correctly ordered = 3 of 4 -> AUROC 0.75
    refs = ["yes", "yes", "no", "no"]
    p = [0.9, 0.4, 0.6, 0.1]
    vals = score("auroc", [("", r) for r in refs], "yes_no", p_yes=p)
    assert vals == p
    labels = [1.0, 1.0, 0.0, 0.0]
    auc, lo, hi, n = aggregate_with_ci(vals, labels, "auroc", n_boot=500)
    assert auc == pytest.approx(0.75) and n == 4 and lo <= auc <= hi
    # AP: ranks .9(+) .6(-) .4(+) .1(-): precision at the positives 1/1 and 2/3 -> (1 + 2/3) / 2
    ap, *_ = aggregate_with_ci(vals, labels, "auprc", n_boot=0)
    assert ap == pytest.approx((1 + 2 / 3) / 2)
    # one class only: undefined, never a made-up 0.5
    assert aggregate_with_ci([0.2, 0.3], [1.0, 1.0], "auroc")[0] is None


def test_bootstrap_auroc_vectorised_equals_sklearn_per_resample():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from evaluation.aggregate import _auroc_batch

    rng = np.random.default_rng(3)
    v = rng.random(30).round(1)  # ties on purpose
    y = (rng.random(30) < 0.5).astype(float)
    idx = rng.integers(0, 30, size=(50, 30))
    got = _auroc_batch(v, y, idx)
    for row, g in zip(idx, got):
        if len(set(y[row])) == 2:
            assert g == pytest.approx(roc_auc_score(y[row], v[row]))
        else:
            assert math.isnan(g)


def test_rouge_l_and_bleu_known_values():
    assert score("rouge_l", [("the patient was discharged home", "the patient was discharged home")]) == [
        pytest.approx(1.0)]
    # LCS of "a b c d" and "a c d e" is "a c d": P = R = 3/4
    assert score("rouge_l", [("a b c d", "a c d e")]) == [pytest.approx(0.75)]
    assert score("rouge_l", [("", "anything")]) == [0.0]
    b = score("bleu", [("the cat sat on the mat", "the cat sat on the mat"), ("dog", "the cat sat on the mat")])
    assert b[0] == pytest.approx(1.0) and 0.0 <= b[1] < 0.1


def test_embedding_similarity_ranks_paraphrase_above_unrelated():
    vals = score("embedding_similarity", [
        ("The patient has a high fever.", "The patient is febrile with a high temperature."),
        ("The invoice is due on Friday.", "The patient is febrile with a high temperature."),
        ("same words", "same words"),
    ])
    assert vals[0] > vals[1] + 0.2
    assert vals[2] == pytest.approx(1.0, abs=1e-4)


def test_rouge5_and_ngram8_overlap_detect_copied_spans():
    ref = "one two three four five six seven eight nine ten"
    copied = "one two three four five six seven eight nine ten"
    fresh = "completely different words written here by the model for you"
    assert score("rouge5", [(copied, ref), (fresh, ref)], "note") == [pytest.approx(1.0), 0.0]
    # prediction of 10 tokens -> 3 8-grams; the first two occur in the context, the last does not
    ctx = "alpha beta gamma delta epsilon zeta eta theta iota"
    pred = "alpha beta gamma delta epsilon zeta eta theta iota omega"
    assert score("ngram8_overlap", [(pred, "x")], "note", context=ctx) == [pytest.approx(2 / 3)]
    assert score("ngram8_overlap", [("too short", ref)], "note") == [None]


def test_paired_bootstrap_delta_is_tighter_than_independent_intervals():
    import numpy as np

    from evaluation.compare import paired_delta

    rng = np.random.default_rng(0)
    base = (rng.random(80) < 0.5).astype(float)
    ft = base.copy()
    ft[np.flatnonzero(base == 0)[:8]] = 1.0  # the fine-tune fixes 8 items and breaks none
    delta, lo, hi = paired_delta(ft, base, None, "mean", 1000, 0)
    assert delta == pytest.approx(0.1)
    assert lo > 0  # every resample shows an improvement: the paired test sees it
    _, ft_lo, _, _ = aggregate_with_ci(list(ft), None, "mean", 1000, 0)
    _, _, base_hi, _ = aggregate_with_ci(list(base), None, "mean", 1000, 0)
    assert ft_lo < base_hi  # ... while the two independent intervals overlap


def test_aggregations_and_judge_metrics_are_registered_like_metrics():
    """A new aggregation is one registered function; judge metrics carry direction and aggregation in the registry."""
    import numpy as np

    from evaluation.aggregate import AGGREGATIONS, aggregate_with_ci, register_aggregation
    from evaluation.metrics import all_metrics, default_metrics, get_metric, judge_metrics

    assert {"mean", "auroc", "auprc"} <= set(AGGREGATIONS)
    assert {m.name for m in judge_metrics()} == {"judge_score", "judge_win_rate"}
    assert get_metric("judge_score").aggregation == "mean" and get_metric("judge_score").higher_is_better
    assert "judge_score" not in default_metrics("text")
    assert all(m.aggregation in AGGREGATIONS for m in all_metrics().values())

    @register_aggregation("median_for_test", needs_labels=False)
    def _median(values, labels):
        return float(np.median(values))

    try:
        value, lo, hi, n = aggregate_with_ci([1.0, 2.0, 10.0, None], None, "median_for_test", n_boot=200, seed=0)
        assert (value, n) == (2.0, 3) and lo <= value <= hi
    finally:
        AGGREGATIONS.pop("median_for_test")
