"""The judge's strict parser on well-formed and malformed outputs, and how judgements in both orders combine."""

from __future__ import annotations

import json

import pytest

from evaluation.judges import JudgeParseError, get_rubric, parse_judgement
from evaluation.judges.runner import combine

CRIT = list(get_rubric("clinical_answer").criteria)


def good(a=4, b=2, pref="A"):
    return json.dumps({"A": {c: a for c in CRIT}, "B": {c: b for c in CRIT}, "preferred": pref})


def test_parses_plain_fenced_and_wrapped_json():
    assert parse_judgement(good(), CRIT) == {"A": {c: 4 for c in CRIT}, "B": {c: 2 for c in CRIT}, "preferred": "A"}
    assert parse_judgement(f"```json\n{good(pref='tie')}\n```", CRIT)["preferred"] == "tie"
    assert parse_judgement(f"Here is my grading: {good(pref='b')} Hope it helps.", CRIT)["preferred"] == "B"
    # braces inside strings do not confuse the object scanner
    text = good().replace('"preferred": "A"', '"note": "a {brace}", "preferred": "A"')
    assert parse_judgement(text, CRIT)["A"]["correctness"] == 4


@pytest.mark.parametrize("text, message", [
    ("", "empty output"),
    ("I think A is better.", "no JSON object"),
    ('{"A": {"correctness": 4', "unterminated"),
    ("{'A': {'correctness': 4}}", "invalid JSON"),
    ('{"A": {"correctness": 4}, "B": {}, "preferred": "A"}', "missing criteria"),
    (good(a=6), "integer 1-5"),
    (good(a=3.5), "integer 1-5"),
    (good().replace("4", '"4"'), "integer 1-5"),
    (good(pref="C"), '"preferred"'),
    (json.dumps({"A": {c: 3 for c in CRIT + ["style"]}, "B": {c: 3 for c in CRIT}, "preferred": "A"}), "unknown keys"),
    ("[1, 2]", "no JSON object"),
])
def test_malformed_outputs_raise_with_a_reason(text, message):
    with pytest.raises(JudgeParseError, match=message):
        parse_judgement(text, CRIT)


def test_combine_cancels_position_bias():
    rubric = get_rubric("clinical_answer")
    # a judge that always prefers whatever is shown first and scores it 5, the other 1:
    # ref_first -> reference wins (candidate = B scored 1); cand_first -> candidate wins (A scored 5)
    biased = {
        ("i1", "ref_first"): {"parsed": parse_judgement(good(5, 1, "A"), CRIT), "attempts": 1},
        ("i1", "cand_first"): {"parsed": parse_judgement(good(5, 1, "A"), CRIT), "attempts": 1},
    }
    out = combine("i1", {"j": biased}, rubric)
    assert out["judge_win_rate"] == pytest.approx(0.5)
    assert out["judge_score"] == pytest.approx(0.5)
    assert out["details"]["judges"]["j"]["position_consistent"] is False
    # a consistent judge that prefers the candidate in both orders
    fair = {
        ("i1", "ref_first"): {"parsed": parse_judgement(good(2, 4, "B"), CRIT), "attempts": 1},
        ("i1", "cand_first"): {"parsed": parse_judgement(good(4, 2, "A"), CRIT), "attempts": 2},
    }
    out = combine("i1", {"j": fair}, rubric)
    assert out["judge_win_rate"] == 1.0 and out["judge_score"] == pytest.approx(0.75)
    assert out["details"]["judges"]["j"]["position_consistent"] is True
    # jury: averaged over judges; an unusable judgement is left out, not counted as a loss
    broken = {("i1", "ref_first"): {"error": "no JSON object in the output", "attempts": 3, "raw": "??"}}
    out = combine("i1", {"fair": fair, "broken": broken}, rubric)
    assert out["judge_win_rate"] == 1.0
    assert out["details"]["judges"]["broken"]["ref_first"]["error"].startswith("no JSON")
    assert combine("i1", {"broken": broken}, rubric)["judge_score"] is None


def test_rubric_prompt_hides_which_answer_is_the_reference():
    msgs = get_rubric("clinical_answer").render("Q?", "record", "first answer", "second answer")
    text = msgs[-1]["content"]
    assert "reference" not in text.lower()
    assert text.index("first answer") < text.index("second answer")
    for c in CRIT:
        assert c in text


def test_judge_calls_go_through_the_llm_client_phi_guard():
    from ehrforge.llm import LLMConfig, PHIGuardError
    from evaluation.judges import JudgeItem, judge_items

    external = LLMConfig(backend="openai", model="gpt-judge", base_url="https://api.example.com/v1")
    item = JudgeItem(id="i1", question="Q?", context="patient text", candidate="a", reference="b")
    with pytest.raises(PHIGuardError, match="not approved"):
        judge_items([item], get_rubric("clinical_answer"), [("ext", external)])


def test_choice_output_renders_a_one_word_verdict_prompt_and_keeps_the_record():
    from evaluation.judges.rubric import CLINICAL_ANSWER

    msgs = CLINICAL_ANSWER.render_choice("What was the potassium?", "Potassium 6.1 mEq/L.", "6.1", "4.0")
    user = msgs[1]["content"]
    assert "Potassium 6.1 mEq/L." in user and "Response A:\n6.1" in user and "Response B:\n4.0" in user
    assert user.endswith("Reply with one word: A, B or tie.") and "JSON" not in msgs[0]["content"] + user
    assert msgs[1]["content"] != CLINICAL_ANSWER.render("What was the potassium?", "Potassium 6.1 mEq/L.", "6.1",
                                                        "4.0")[1]["content"]


def test_choice_verdicts_combine_into_a_win_rate_without_criterion_scores():
    from evaluation.judges.rubric import CLINICAL_ANSWER
    from evaluation.judges.runner import combine, judge_reliability

    per_judge = {"j": {("x", "ref_first"): {"parsed": {"preferred": "B", "probs": {}}, "attempts": 1},
                       ("x", "cand_first"): {"parsed": {"preferred": "B", "probs": {}}, "attempts": 1}}}
    res = combine("x", per_judge, CLINICAL_ANSWER)
    # ref_first: B is the candidate (win); cand_first: B is the reference (loss) -> the swap changed the verdict
    assert res["judge_win_rate"] == 0.5 and res["judge_score"] is None
    assert res["details"]["judges"]["j"]["position_consistent"] is False
    rel = judge_reliability([res["details"]])
    assert rel["parse_rate"] == 1.0 and rel["position_consistency"] == 0.0
