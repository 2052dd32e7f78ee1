"""End to end on the demo: the session chain's evaluation (tests/chain.py: the demo instruction set's test split,
seeded subset, x {the tiny LoRA `training.launch` trained, its base}), generation through ehrforge.llm
(transformers backend), metrics, judge, bootstrap, warehouse tables, dbt results marts; then the same spec again,
answered from the cache without duplicating a row."""

from __future__ import annotations

import duckdb
import pytest

from tests.chain import eval_spec

pytestmark = pytest.mark.timeout(600)


def _count(con, table):
    return con.execute(f"select count(*) from {table}").fetchone()[0]


def test_results_marts_build_empty_before_anything_was_evaluated(demo_warehouse):
    with duckdb.connect(str(demo_warehouse), read_only=True) as con:
        assert _count(con, "results.results_leaderboard") == 0
        assert _count(con, "evaluation.eval_runs") == 0


def test_chain_evaluation_writes_tables_and_marts(demo_chain):
    first = demo_chain.eval_summaries
    assert [s.status for s in first] == ["succeeded", "succeeded"]
    assert all(s.n_llm_calls > 0 for s in first)
    with duckdb.connect(str(demo_chain.warehouse), read_only=True) as con:
        n_tasks = con.execute("select count(distinct task) from synthesis.instructions "
                              "where dataset = 'demo' and split = 'test'").fetchone()[0]
        assert first[0].n_items == con.execute("""select sum(least(n, 6)) from (select count(*) n from
            synthesis.instructions where dataset = 'demo' and split = 'test' group by task)""").fetchone()[0]
        assert n_tasks >= 4
        runs = con.execute("select run_id, model_kind, adapter_path, base_model_path, model_path, status, "
                           "training_run_id from evaluation.eval_runs order by model_kind").fetchall()
        assert [r[1] for r in runs] == ["adapter", "base"]
        assert runs[0][2] and runs[0][3] == runs[1][4]  # the fine-tune's base is the base run's model
        assert runs[0][6] == demo_chain.train_run_id    # the adapter is the one training.launch recorded
        assert _count(con, "evaluation.predictions") == 2 * first[0].n_items
        # every item is from a test patient
        assert con.execute("""select count(*) from evaluation.predictions p join marts.dim_splits s using (subject_id)
                              where s.split <> 'test'""").fetchone()[0] == 0
        metrics = {(t, m) for t, m in con.execute("select distinct task, metric from evaluation.scores").fetchall()}
        # every answer type evaluated gets its default metrics, on whichever task it was seen
        by_type = {"yes_no": ["auroc", "accuracy", "brier"], "number": ["numeric_match", "exact_match"],
                   "set": ["set_f1"], "text": ["rouge_l", "bleu", "embedding_similarity"]}
        seen = con.execute("select distinct task, answer_type from evaluation.predictions").fetchall()
        assert {a for _, a in seen} == set(by_type)
        overridden = set(eval_spec().metrics)  # note_generation: the spec names its metrics
        for task, answer_type in seen:
            for metric in [] if task in overridden else by_type[answer_type]:
                assert (task, metric) in metrics, (task, answer_type, metric)
        for want in [("risk_prediction", "auroc"), ("decision_making", "set_f1"), ("note_generation", "rouge5"),
                     ("note_generation", "ngram8_overlap")]:
            assert want in metrics, want
        assert any(m == "judge_score" for _, m in metrics)  # on the first open-ended items (judge.max_items)
        # P(yes) is a probability for every yes/no prediction, and the prediction is the likelier choice
        bad = con.execute("""select count(*) from evaluation.predictions where answer_type = 'yes_no'
                             and not (p_yes between 0 and 1 and prediction = case when p_yes >= 0.5 then 'yes' else 'no' end)
                          """).fetchone()[0]
        assert bad == 0
        # the leaderboard's AUROC is the AUROC of the stored predictions (recomputed here independently)
        from sklearn.metrics import roc_auc_score

        for run_id, *_ in runs:
            df = con.execute("select p_yes, reference from evaluation.predictions "
                             "where run_id = ? and task = 'risk_prediction'", [run_id]).df()
            want = roc_auc_score((df["reference"] == "yes").astype(int), df["p_yes"])
            got, lo, hi = con.execute("""select value, ci_low, ci_high from results.results_leaderboard
                                  where run_id = ? and task = 'risk_prediction' and metric = 'auroc'""",
                                      [run_id]).fetchone()
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


def test_same_spec_again_is_answered_from_the_cache(demo_chain, chain_copy):
    from evaluation.runner import evaluate

    tables = ("evaluation.predictions", "evaluation.scores", "evaluation.task_metrics", "evaluation.eval_runs",
              "evaluation.comparisons", "llm.calls", "evaluation.calibration_bins", "evaluation.subgroup_metrics")
    with duckdb.connect(str(chain_copy), read_only=True) as con:
        before = {t: _count(con, t) for t in tables}
    assert before["evaluation.calibration_bins"] > 0 and before["evaluation.subgroup_metrics"] > 0
    # every call from the cache, same run ids, no duplicated row (results marts not rebuilt: nothing changed)
    second = evaluate(eval_spec(build_results=False), progress=False)
    assert [s.run_id for s in second] == [s.run_id for s in demo_chain.eval_summaries]
    assert all(s.n_llm_calls == 0 and s.n_cached > 0 for s in second)
    with duckdb.connect(str(chain_copy), read_only=True) as con:
        assert {t: _count(con, t) for t in tables} == before
        assert con.execute("select bool_and(is_cached) from evaluation.predictions").fetchone()[0]


def test_a_changed_setting_under_the_same_version_is_refused(chain_copy):
    """A changed prompt/metric setting under the same spec version is refused before any work; batch size is not."""
    from ehrforge.errors import ConfigError
    from evaluation.runner import evaluate

    spec = eval_spec()
    with pytest.raises(ConfigError, match="Bump `version`"):
        evaluate(eval_spec(generation={"max_new_tokens": 17, "batch_size": 16}), progress=False)
    assert eval_spec(generation={"max_new_tokens": 16, "batch_size": 4}).fingerprint() == spec.fingerprint()


def test_report_renders_the_chain_results(demo_chain, chain_copy, tmp_path):
    from evaluation import report

    report.main(["--spec", "chain", "--out", str(tmp_path / "reports")])
    html = next((tmp_path / "reports").rglob("*.html")).read_text()
    for task in ("template_qa", "risk_prediction", "decision_making"):
        assert task in html
    assert any((tmp_path / "reports").rglob("*.png"))
