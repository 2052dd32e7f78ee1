"""The most-common-answer-per-template baseline: answers come from the train split only, scored like any model."""

from __future__ import annotations

from collections import Counter

import duckdb
import pytest


def test_baseline_answers_the_most_common_train_answer_per_template(eval_warehouse):
    from evaluation.runner import evaluate
    from evaluation.spec import EvalSpec
    from tests.chain import DATASET

    spec = EvalSpec.model_validate({
        "name": "baseline-test", "version": 1, "data": {"dataset": DATASET, "split": "test"},
        "models": [{"name": "most-common", "kind": "baseline"}], "build_results": False, "bootstrap": {"n": 50}})
    (summary,) = evaluate(spec, progress=False)
    assert summary.status == "succeeded" and summary.n_llm_calls == 0 and summary.n_items > 0
    with duckdb.connect(str(eval_warehouse), read_only=True) as con:
        train = con.execute("select task, template_id, answer from synthesis.instructions "
                            "where dataset = ? and split = 'train'", [DATASET]).fetchall()
        preds = con.execute("select p.task, i.template_id, p.prediction, p.answer_type, p.p_yes "
                            "from evaluation.predictions p join synthesis.instructions i using (instruction_id) "
                            "where p.spec_name = 'baseline-test'").fetchall()
        kinds = con.execute("select distinct model_kind from evaluation.eval_runs "
                            "where spec_name = 'baseline-test'").fetchall()
    assert kinds == [("baseline",)] and len(preds) == summary.n_items
    counts: dict = {}
    for task, tid, ans in train:
        counts.setdefault((task, tid), Counter())[ans] += 1
    for task, tid, pred, atype, p_yes in preds:
        c = counts[(task, tid)]
        assert c[pred] == max(c.values()), (task, tid, pred)
        if atype == "yes_no":
            share = sum(n for a, n in c.items() if a.strip().lower().startswith("yes")) / sum(c.values())
            assert p_yes == pytest.approx(share)


def test_baseline_takes_no_model_fields():
    from evaluation.spec import ModelSpec

    with pytest.raises(ValueError, match="kind baseline"):
        ModelSpec(name="b", kind="baseline", path="tiny://")
