"""End to end on the demo: fixture instruction set (test split, seeded subset) x {tiny LoRA fine-tune, its base},
generation through ehrforge.llm (transformers backend), metrics, judge, bootstrap, warehouse tables, dbt results
marts; then the same spec again, answered from the cache without duplicating a row."""

from __future__ import annotations

import duckdb
import pytest

from tests.evaluation.conftest import TRAIN_RUN_ID, TRAIN_RUN_NAME
from tests.evaluation.instructions_fixture import DATASET

pytestmark = pytest.mark.timeout(600)


def _spec(**over):
    from evaluation.spec import EvalSpec

    tiny = {"name": "tiny-base", "kind": "base", "training_run_id": TRAIN_RUN_ID}
    body = {
        "name": "e2e", "version": 1,
        "data": {"dataset": DATASET, "split": "test", "subset": {"n_per_task": 6, "seed": 0}},
        "models": [
            {"name": "tiny-lora", "kind": "adapter", "training_run_id": "latest", "training_run_name": TRAIN_RUN_NAME},
            tiny,
        ],
        "generation": {"max_new_tokens": 16, "batch_size": 16},
        "metrics": {"discharge_note": ["rouge5", "ngram8_overlap", "rouge_l"]},
        "judge": {"enabled": True, "jury": [tiny], "max_items": 2, "max_retries": 1, "max_new_tokens": 24},
        "bootstrap": {"n": 200, "seed": 0},
    }
    body.update(over)
    return EvalSpec.model_validate(body)


def _count(con, table):
    return con.execute(f"select count(*) from {table}").fetchone()[0]


def test_evaluate_writes_tables_and_marts_then_reuses_cache(eval_warehouse, dbt_env):
    from ehrforge.build import run_dbt
    from evaluation.runner import evaluate

    # fresh warehouse: the results marts build (empty) before anything was evaluated
    assert run_dbt(["build", "--select", "source:evaluation+", "--quiet"])
    with duckdb.connect(str(eval_warehouse), read_only=True) as con:
        assert _count(con, "results.results_leaderboard") == 0
        assert _count(con, "evaluation.eval_runs") == 0

    spec = _spec()
    first = evaluate(spec, progress=False)
    assert [s.status for s in first] == ["succeeded", "succeeded"]
    assert all(s.n_llm_calls > 0 for s in first)
    n_items = first[0].n_items
    assert n_items == 6 * 6  # six fixture tasks, six items each

    with duckdb.connect(str(eval_warehouse), read_only=True) as con:
        runs = con.execute("select run_id, model_kind, adapter_path, base_model_path, model_path, status "
                           "from evaluation.eval_runs order by model_kind").fetchall()
        assert [r[1] for r in runs] == ["adapter", "base"]
        assert runs[0][2] and runs[0][3] == runs[1][4]  # the fine-tune's base is the base run's model
        assert _count(con, "evaluation.predictions") == 2 * n_items
        # every item is from a test patient
        assert con.execute("""select count(*) from evaluation.predictions p join marts.dim_splits s using (subject_id)
                              where s.split <> 'test'""").fetchone()[0] == 0
        metrics = {(t, m) for t, m in con.execute("select distinct task, metric from evaluation.scores").fetchall()}
        for want in [("los_gt_3d", "auroc"), ("los_gt_3d", "accuracy"), ("length_of_stay", "numeric_match"),
                     ("abnormal_labs_24h", "set_f1"), ("hospital_course", "rouge_l"), ("hospital_course", "bleu"),
                     ("hospital_course", "embedding_similarity"), ("discharge_note", "rouge5"),
                     ("discharge_note", "ngram8_overlap"), ("hospital_course", "judge_score")]:
            assert want in metrics, want
        # P(yes) is a probability for every yes/no prediction, and the prediction is the likelier choice
        bad = con.execute("""select count(*) from evaluation.predictions where answer_type = 'yes_no'
                             and not (p_yes between 0 and 1 and prediction = case when p_yes >= 0.5 then 'yes' else 'no' end)
                          """).fetchone()[0]
        assert bad == 0
        # the leaderboard's AUROC is the AUROC of the stored predictions (recomputed here independently)
        from sklearn.metrics import roc_auc_score

        for run_id, *_ in runs:
            df = con.execute("select p_yes, reference from evaluation.predictions where run_id = ? and task = 'los_gt_3d'",
                             [run_id]).df()
            want = roc_auc_score((df["reference"] == "yes").astype(int), df["p_yes"])
            got, lo, hi = con.execute("""select value, ci_low, ci_high from results.results_leaderboard
                                  where run_id = ? and task = 'los_gt_3d' and metric = 'auroc'""", [run_id]).fetchone()
            assert got == pytest.approx(want)
            assert lo <= got <= hi
        n_board = _count(con, "results.results_leaderboard")
        assert n_board == _count(con, "evaluation.task_metrics") > 0
        cmp = con.execute("select count(*), count(delta), sum(n_paired), count(delta_ci_low) "
                          "from results.results_finetune_vs_base").fetchone()
        assert cmp[0] == n_board // 2 and cmp[1] > 0 and cmp[2] > 0 and cmp[3] > 0
        # the paired-bootstrap interval brackets the observed difference
        assert con.execute("""select count(*) from results.results_finetune_vs_base where delta_ci_low is not null
                              and not (delta_ci_low - 1e-9 <= delta and delta <= delta_ci_high + 1e-9)""").fetchone()[0] == 0
        judge = con.execute("select details from evaluation.scores where metric = 'judge_score' limit 1").fetchone()[0]
        assert "ref_first" in judge and "cand_first" in judge  # both answer orders were asked
        before = {t: _count(con, t) for t in ("evaluation.predictions", "evaluation.scores", "evaluation.task_metrics",
                                              "evaluation.eval_runs", "evaluation.comparisons", "llm.calls",
                                              "evaluation.calibration_bins", "evaluation.subgroup_metrics")}
        assert before["evaluation.calibration_bins"] > 0 and before["evaluation.subgroup_metrics"] > 0

    # the same spec again: every call from the cache, same run ids, no duplicated row
    second = evaluate(spec, progress=False)
    assert [s.run_id for s in second] == [s.run_id for s in first]
    assert all(s.n_llm_calls == 0 and s.n_cached > 0 for s in second)
    with duckdb.connect(str(eval_warehouse), read_only=True) as con:
        after = {t: _count(con, t) for t in before}
        assert after == before
        assert con.execute("select bool_and(is_cached) from evaluation.predictions").fetchone()[0]

    # a changed prompt/metric setting under the same spec version is refused before any work; batch size is not
    from ehrforge.errors import ConfigError

    with pytest.raises(ConfigError, match="Bump `version`"):
        evaluate(_spec(generation={"max_new_tokens": 17, "batch_size": 16}), progress=False)
    assert _spec(generation={"max_new_tokens": 16, "batch_size": 4}).fingerprint() == spec.fingerprint()
