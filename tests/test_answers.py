"""The one answer verifier (ehrforge.answers) on hand-written outputs: what synthesis accepts, GRPO rewards and
evaluation scores are the same function."""

from __future__ import annotations

import pytest

from ehrforge.answers import format_score, split_final_answer, strip_thinking, verify, with_thinking


@pytest.mark.parametrize("prediction, reference, answer_type, score", [
    ("yes", "yes", "yes_no", 1.0),
    ("Yes, the potassium was high.", "yes", "yes_no", 1.0),
    ("No.", "yes", "yes_no", 0.0),
    ("maybe", "no", "yes_no", 0.0),
    ("4.2", "4.2", "number", 1.0),
    ("about 4.3 mEq/L", "4.2", "number", 1.0),        # within abs_tol 0.5
    ("140", "128", "number", 0.0),
    ("none given", "7", "number", 0.0),
    ('["Glucose", "Potassium"]', '["Potassium", "Glucose"]', "set", 1.0),
    ("glucose; potassium", '["Glucose", "Potassium", "Sodium"]', "set", 0.8),
    ("Sodium", '["Glucose", "Potassium"]', "set", 0.0),
    ("2150-01-02 08:00", "2150-01-02 08:00", "text", 1.0),
    ("The 2150-01-02 08:00", "2150-01-02 08:00", "text", 1.0),  # articles and punctuation are normalised away
    ("2150-01-02 09:00", "2150-01-02 08:00", "text", 0.0),
])
def test_verify_scores_by_answer_type(prediction, reference, answer_type, score):
    v = verify(prediction, reference, answer_type)
    assert v.score == pytest.approx(score)
    assert v.is_correct == (score == 1.0)


def test_verify_unscorable_reference_is_none_not_wrong():
    assert verify("yes", "unclear", "yes_no").score is None
    assert verify("", "[]", "set").score == 1.0  # both empty
    assert not verify("yes", "unclear", "yes_no").is_correct


def test_final_answer_is_the_last_answer_line_and_thinking_is_reasoning():
    text = "K was 6.1, above 5.1.\nSo it is high.\nAnswer: yes"
    assert split_final_answer(text) == ("K was 6.1, above 5.1.\nSo it is high.", "yes")
    # the last Answer: line wins; bold markdown is tolerated
    assert split_final_answer("Answer: no\nWait, 6.1 > 5.1.\n**Answer:** yes")[1] == "yes"
    assert split_final_answer("I think it is yes") == ("I think it is yes", None)
    assert split_final_answer("<think>K is high</think>\nyes") == ("K is high", "yes")
    assert split_final_answer("<think>K is high</think>\nAnswer: yes") == ("K is high", "yes")


def test_thinking_section_round_trip_and_unclosed_section():
    row_answer = with_thinking("K 6.1 > 5.1", "yes")
    assert row_answer == "<think>\nK 6.1 > 5.1\n</think>\nyes"
    assert strip_thinking(row_answer) == ("K 6.1 > 5.1", "yes")
    assert strip_thinking("plain answer") == (None, "plain answer")
    # an unclosed section swallows the rest: the model never gave an answer
    assert strip_thinking("<think>still thinking about potassium") == ("still thinking about potassium", "")


@pytest.mark.parametrize("text, score", [
    ("Potassium is above the range.\nAnswer: yes", 1.0),
    ("Answer: yes", 0.5),
    ("yes", 0.0),
    ("", 0.0),
    ("The value is high.\nAnswer:", 0.0),   # an empty answer line is no answer
])
def test_format_score(text, score):
    assert format_score(text) == score


def test_evaluation_metrics_use_the_shared_verifier():
    """exact_match / numeric_match / set_f1 / accuracy give what verify gives, item by item."""
    from evaluation.metrics import MetricInput, get_metric

    items = [MetricInput("about 4.3", "4.2", "number"), MetricInput("140", "128", "number"),
             MetricInput("glucose; potassium", '["Glucose", "Potassium", "Sodium"]', "set"),
             MetricInput("No.", "yes", "yes_no"), MetricInput("Yes", "yes", "yes_no")]
    by_type = {"number": "numeric_match", "set": "set_f1", "yes_no": "accuracy"}
    for it in items:
        got = get_metric(by_type[it.answer_type]).score([it])[0]
        assert got == pytest.approx(verify(it.prediction, it.reference, it.answer_type).score)


def test_parse_response_is_what_evaluation_scores_and_grpo_rewards():
    from ehrforge.answers import parse_response

    assert parse_response("yes") == (None, "yes")
    assert parse_response("Line one.\nLine two.") == (None, "Line one.\nLine two.")  # plain output: all of it
    assert parse_response("K 6.1 > 5.1.\nAnswer: yes") == ("K 6.1 > 5.1.", "yes")
    assert parse_response("<think>\nK high\n</think>\nyes") == ("K high", "yes")
    assert parse_response("<think>K high</think>\nSo:\nAnswer: yes") == ("K high\nSo:", "yes")


def test_evaluation_strips_reasoning_before_scoring_and_reports_its_length():
    import pandas as pd

    from evaluation.runner import score_items
    from evaluation.spec import EvalSpec

    items = pd.DataFrame([
        {"instruction_id": "a", "task": "risk_prediction", "answer_type": "yes_no", "answer": "yes", "context": ""},
        {"instruction_id": "b", "task": "risk_prediction", "answer_type": "yes_no",
         "answer": "<think>\nold chain\n</think>\nno", "context": ""},   # a reasoning row: gold after its thinking
    ])
    spec = EvalSpec.model_validate({"name": "t", "version": 1, "data": {"dataset": "d"}, "models": [{"name": "m", "kind": "base",
                                                                                       "path": "tiny://"}]})
    rows = score_items(items, ["<think>\nrisk is high here\n</think>\nyes", "The record is calm.\nAnswer: no"],
                       [None, None], spec)
    by = {(r["instruction_id"], r["metric"]): r["value"] for r in rows}
    assert by[("a", "exact_match")] == 1.0 and by[("b", "exact_match")] == 1.0
    assert by[("a", "reasoning_words")] == 4.0 and by[("b", "reasoning_words")] == 4.0
    # a plain model's outputs get no reasoning rows
    plain = score_items(items, ["yes", "no"], [None, None], spec)
    assert not any(r["metric"] == "reasoning_words" for r in plain)
    assert {r["value"] for r in plain if r["metric"] == "exact_match"} == {1.0}
