"""What clinical reviewers ask for, on the demo: calibration (Brier, ECE, reliability bins), metrics by subgroup of
sex / age band / race / insurance with the largest gap flagged, consistency of sampled answers (pass@k, pass^k),
in the warehouse tables, the results marts and the report; and meds-evaluation's scores equal ours on the same
predictions written in its schema."""

from __future__ import annotations

import json
import shutil

import duckdb
import numpy as np
import pytest

from tests.chain import DATASET, TRAIN_RUN_NAME

N_SAMPLES = 3


# ---------------------------------------------------------------- hand-written values

def test_brier_and_ece_match_hand_computed_values():
    from evaluation.aggregate import aggregate_with_ci
    from evaluation.metrics import MetricInput, get_metric

    items = [MetricInput("", "yes", "yes_no", p_yes=0.9), MetricInput("", "no", "yes_no", p_yes=0.2),
             MetricInput("", "yes", "yes_no", p_yes=0.25), MetricInput("", "no", "yes_no", p_yes=None)]
    b = get_metric("brier").score(items)
    assert b[:3] == pytest.approx([0.01, 0.04, 0.5625]) and b[3] is None
    # bins: 0.9 -> (0.8, 0.9] alone (gap 0.1); 0.2 and 0.25 -> (0.1, 0.2] and (0.2, 0.3] (gaps 0.2 and 0.75)
    value, *_ = aggregate_with_ci([0.9, 0.2, 0.25], [1, 0, 1], "ece", n_boot=0)
    assert value == pytest.approx((0.1 + 0.2 + 0.75) / 3)
    # one class only: ECE is still defined (AUROC is not)
    assert aggregate_with_ci([0.9, 0.8], [1, 1], "ece", n_boot=0)[0] == pytest.approx(0.15)
    assert aggregate_with_ci([0.9, 0.8], [1, 1], "auroc", n_boot=0)[0] is None


def test_reliability_bins_and_vectorised_ece_agree_with_scikit_learn():
    from sklearn.calibration import calibration_curve

    from evaluation.calibration import ece_batch, expected_calibration_error, reliability_bins

    rng = np.random.default_rng(3)
    p = np.round(rng.random(200), 2)  # values on the bin edges too
    y = (rng.random(200) < p).astype(float)
    observed, predicted = calibration_curve(y, p, n_bins=10)
    bins = reliability_bins(p, y)
    assert [b["observed_rate"] for b in bins] == pytest.approx(observed)
    assert [b["mean_predicted"] for b in bins] == pytest.approx(predicted)
    idx = rng.integers(0, 200, size=(50, 200))
    assert ece_batch(p, y, idx) == pytest.approx([expected_calibration_error(p[i], y[i]) for i in idx])


def test_vectorised_auprc_equals_scikit_learn_per_resample_with_ties():
    from sklearn.metrics import average_precision_score

    from evaluation.aggregate import get_aggregation

    rng = np.random.default_rng(0)
    v = np.round(rng.random(40), 1)  # many ties
    y = (rng.random(40) < 0.4).astype(float)
    idx = rng.integers(0, 40, size=(200, 40))
    want = [average_precision_score(y[i], v[i]) if 0 < y[i].sum() < 40 else np.nan for i in idx]
    assert get_aggregation("auprc").resampled(v, y, idx) == pytest.approx(want, nan_ok=True)


def test_pass_at_k_and_pass_hat_k_estimators():
    from evaluation.consistency import pass_at_k, pass_hat_k

    assert pass_at_k(5, 2, 1) == pytest.approx(0.4) and pass_hat_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)       # 1 - C(3,2)/C(5,2)
    assert pass_hat_k(5, 2, 2) == pytest.approx(0.1)      # C(2,2)/C(5,2)
    assert pass_at_k(3, 0, 3) == 0.0 and pass_hat_k(3, 3, 3) == 1.0 and pass_at_k(3, 1, 3) == 1.0


def test_consistency_spec_is_checked():
    from evaluation.spec import EvalSpec

    with pytest.raises(ValueError, match="cannot exceed"):
        EvalSpec.model_validate(_spec_body(consistency={"n_samples": 2, "k": 3}))
    with pytest.raises(ValueError, match="unknown item metric"):
        EvalSpec.model_validate(_spec_body(consistency={"n_samples": 2, "correct_metric": {"yes_no": "nope",
                                                                                            "number": "numeric_match",
                                                                                            "set": "exact_match"}}))


# ---------------------------------------------------------------- one real evaluation run on the demo

def _spec_body(**over):
    body = {
        "name": "clinical", "version": 1,
        "data": {"dataset": DATASET, "split": "test", "tasks": ["risk_prediction", "template_qa", "decision_making"],
                 "subset": {"n_per_task": 10, "seed": 0}},
        "models": [{"name": "tiny-base", "kind": "base", "training_run_id": "latest",
                    "training_run_name": TRAIN_RUN_NAME}],
        "generation": {"max_new_tokens": 8, "batch_size": 16},
        "consistency": {"n_samples": N_SAMPLES, "k": 2, "max_items": 2, "temperature": 1.0},
        "subgroups": {"min_items": 2},
        "bootstrap": {"n": 200, "seed": 0},
    }
    body.update(over)
    return body


def _run(eval_warehouse_base, tmp_path_factory, body) -> tuple:
    from evaluation.runner import evaluate
    from evaluation.spec import EvalSpec

    path = tmp_path_factory.mktemp("clinical") / "warehouse.duckdb"
    shutil.copy(eval_warehouse_base, path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EHRFORGE_DUCKDB", str(path))
        [summary] = evaluate(EvalSpec.model_validate(body), progress=False)
    assert summary.status == "succeeded"
    return path, summary.run_id


@pytest.fixture(scope="module")
def scored(eval_warehouse_base, tmp_path_factory):
    """Fast: the yes/no tasks only (P("yes") by choice scoring, no generation), no consistency, no dbt step."""
    path, run_id = _run(eval_warehouse_base, tmp_path_factory, _spec_body(
        data={"dataset": DATASET, "split": "test", "tasks": ["risk_prediction"],
              "subset": {"n_per_task": 24, "seed": 0}},
        consistency={"n_samples": 0}, build_results=False))
    c = duckdb.connect(str(path), read_only=True)
    yield c, run_id
    c.close()


@pytest.fixture(scope="module")
def evaluated(eval_warehouse_base, dbt_env, tmp_path_factory):
    """Slow: four tasks with generation, consistency samples, subgroups, then the results marts (dbt)."""
    return _run(eval_warehouse_base, tmp_path_factory, _spec_body())


@pytest.fixture(scope="module")
def con(evaluated):
    c = duckdb.connect(str(evaluated[0]), read_only=True)
    yield c
    c.close()


def _yes_no_items(con, run_id):
    df = con.execute("""select task, p_yes, case when reference = 'yes' then 1.0 else 0.0 end as y
                        from evaluation.predictions where run_id = ? and answer_type = 'yes_no'""", [run_id]).df()
    return {t: (g["p_yes"].to_numpy(), g["y"].to_numpy()) for t, g in df.groupby("task")}


def test_calibration_figures_and_bins_come_from_the_predictions(scored):
    from evaluation.calibration import expected_calibration_error

    con, run_id = scored
    figures = {(t, m): v for t, m, v in con.execute(
        "select task, metric, value from evaluation.task_metrics where run_id = ? and metric in ('brier', 'ece')",
        [run_id]).fetchall()}
    items = _yes_no_items(con, run_id)
    assert set(items) == {"risk_prediction"}
    for task, (p, y) in items.items():
        assert figures[(task, "brier")] == pytest.approx(np.mean((p - y) ** 2))
        assert figures[(task, "ece")] == pytest.approx(expected_calibration_error(p, y))
        n, n_bins, ece = con.execute("""
            select sum(n_items), count(*), sum(n_items * abs(observed_rate - mean_predicted)) / sum(n_items)
            from evaluation.calibration_bins where run_id = ? and task = ?""", [run_id, task]).fetchone()
        assert n == len(p) and n_bins >= 1 and ece == pytest.approx(figures[(task, "ece")])


def test_meds_evaluation_scores_equal_ours(scored, tmp_path):
    pytest.importorskip("meds_evaluation")
    import polars as pl
    from meds_evaluation.evaluate import evaluate_binary_classification

    from meds_export.predictions import export_predictions

    con, run_id = scored
    written = export_predictions(con, tmp_path, [run_id])
    assert {p.stem for p in written} == {"risk_prediction"}
    ours = {(t, m): v for t, m, v in con.execute(
        "select task, metric, value from evaluation.task_metrics where run_id = ?", [run_id]).fetchall()}
    for path, n in written.items():
        task = path.stem
        preds = pl.read_parquet(path)
        # the labels are fct_outcomes' and equal the references we scored against
        ref = con.execute("select count(*), sum(case when reference = 'yes' then 1 else 0 end) from "
                          "evaluation.predictions where run_id = ? and task = ?", [run_id, task]).fetchone()
        assert (n, preds["boolean_value"].sum()) == ref
        theirs = evaluate_binary_classification(preds)["samples_equally_weighted"]
        tol = {"abs": 1e-6}  # their probabilities are float32 (the MEDS prediction schema)
        if ours[(task, "auroc")] is not None:
            assert theirs["roc_auc_score"] == pytest.approx(ours[(task, "auroc")], **tol)
            assert theirs["average_precision_score"] == pytest.approx(ours[(task, "auprc")], **tol)
        assert theirs["binary_accuracy"] == pytest.approx(ours[(task, "accuracy")], **tol)
        assert theirs["brier_score"] == pytest.approx(ours[(task, "brier")], **tol)
        # their calibration_error is the unweighted mean gap over the same non-empty bins
        gaps = [g for (g,) in con.execute("select abs(observed_rate - mean_predicted) from evaluation.calibration_bins "
                                          "where run_id = ? and task = ?", [run_id, task]).fetchall()]
        assert theirs["calibration_error"] == pytest.approx(np.mean(gaps), **tol)


def test_subgroups_partition_the_items_with_the_metric_per_subgroup(scored):
    con, run_id = scored
    # each attribute's subgroups partition the task's items (mean metrics: every scored item counts once)
    bad = con.execute("""
        select count(*) from (
            select s.task, s.metric, s.attribute, sum(s.n_items) as n_sub, any_value(m.n_items) as n_task
            from evaluation.subgroup_metrics s join evaluation.task_metrics m using (run_id, task, metric)
            where s.run_id = ? and s.aggregation = 'mean' group by all) where n_sub <> n_task""", [run_id]).fetchone()[0]
    assert bad == 0
    assert con.execute("select list(distinct attribute order by attribute) from evaluation.subgroup_metrics "
                       "where run_id = ?", [run_id]).fetchone()[0] == ["age_band", "insurance", "race", "sex"]
    # a subgroup's figure is its items' figure, the subgroup read from dim_admissions independently
    for metric in ("brier", "auroc"):
        rows = con.execute(f"""
            select a.age_band, list(s.value order by s.instruction_id), list(s.label order by s.instruction_id)
            from evaluation.scores s join synthesis.instructions i using (instruction_id)
            join marts.dim_admissions a on a.hadm_id = i.hadm_id
            where s.run_id = ? and s.task = 'risk_prediction' and s.metric = ? and s.value is not null
            group by 1""", [run_id, metric]).fetchall()
        got = dict(con.execute("""select subgroup, value from evaluation.subgroup_metrics where run_id = ?
                                  and task = 'risk_prediction' and metric = ? and attribute = 'age_band'""",
                               [run_id, metric]).fetchall())
        assert set(got) == {band for band, _, _ in rows}
        from sklearn.metrics import roc_auc_score

        for band, values, labels in rows:
            if metric == "brier":
                assert got[band] == pytest.approx(np.mean(values))
            elif len(set(labels)) == 2:
                assert got[band] == pytest.approx(roc_auc_score(labels, values))
            else:
                assert got[band] is None or got[band] != got[band]  # one class: AUROC undefined


@pytest.mark.slow
def test_results_subgroups_flag_the_largest_gap(con, evaluated):
    run_id = evaluated[1]
    # per run, task and metric: the flagged attribute is the one with the largest gap, and it is best - worst
    groups = con.execute("""
        select task, metric, attribute, any_value(attribute_gap), bool_or(is_largest_gap),
               max(case when higher_is_better then value else -value end) filter (where is_ranked)
             - min(case when higher_is_better then value else -value end) filter (where is_ranked),
               count(*) filter (where is_ranked)
        from results.results_subgroups where run_id = ? group by 1, 2, 3""", [run_id]).fetchall()
    by_metric = {}
    for task, metric, attr, gap, flagged, spread, n_ranked in groups:
        if n_ranked >= 2:
            assert gap == pytest.approx(spread)
        by_metric.setdefault((task, metric), []).append((gap, flagged, attr))
    n_flagged = 0
    for key, attrs in by_metric.items():
        gaps = [g for g, _, _ in attrs if g is not None]
        flagged = [a for g, f, a in attrs if f]
        if gaps and max(gaps) > 0:
            assert flagged and all(g == max(gaps) for g, f, _ in attrs if f), key
            n_flagged += 1
        else:
            assert not flagged, key
    assert n_flagged > 0


@pytest.mark.slow
def test_consistency_samples_give_pass_at_k_and_pass_hat_k(con, evaluated):
    from evaluation.consistency import pass_at_k, pass_hat_k

    run_id = evaluated[1]
    samples = con.execute("""select instruction_id, count(*), count(distinct seed), sum(is_correct::int),
                                    any_value(correct_metric), count(error)
                             from evaluation.samples where run_id = ? group by 1""", [run_id]).fetchall()
    assert len(samples) == 3 * 2  # max_items 2 per task, three tasks of the three default answer types
    values = {(i, m): (v, json.loads(d)) for i, m, v, d in con.execute(
        "select instruction_id, metric, value, details from evaluation.scores where run_id = ? "
        "and metric in ('pass_at_k', 'pass_hat_k')", [run_id]).fetchall()}
    for iid, n, n_seeds, c, metric, n_err in samples:
        assert n == n_seeds == N_SAMPLES and n_err == 0
        assert values[(iid, "pass_at_k")][0] == pytest.approx(pass_at_k(N_SAMPLES, c, 2))
        assert values[(iid, "pass_hat_k")][0] == pytest.approx(pass_hat_k(N_SAMPLES, c, 2))
        assert values[(iid, "pass_at_k")][1] == {"n": N_SAMPLES, "k": 2, "n_correct": c, "correct_metric": metric}
    # sampled at temperature 1 with different seeds: the answers are not all the same
    assert con.execute("select count(distinct prediction) from evaluation.samples where run_id = ?",
                       [run_id]).fetchone()[0] > N_SAMPLES
    board = con.execute("select count(*) from results.results_leaderboard where run_id = ? and metric in "
                        "('pass_at_k', 'pass_hat_k')", [run_id]).fetchone()[0]
    assert board == 2 * 3


@pytest.mark.slow
def test_report_shows_calibration_subgroups_and_consistency(evaluated, tmp_path, monkeypatch):
    from evaluation.report import main

    monkeypatch.setenv("EHRFORGE_DUCKDB", str(evaluated[0]))
    main(["--spec", "clinical", "--out", str(tmp_path)])
    html = (tmp_path / "index.html").read_text()
    for want in ("calibration", "reliability diagram", "subgroups: the largest gap", "consistency of sampled answers",
                 "pass_hat_k"):
        assert want in html, want
    assert (tmp_path / "calibration_clinical.png").stat().st_size > 5000
