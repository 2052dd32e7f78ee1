"""Fault injection on `python -m evaluation.cli` (see tests/faults.py): SIGKILL mid-run, re-run from another folder
without MIMIC_ROOT (the results step reads no raw file), compare with an uninterrupted run."""

from __future__ import annotations

import shutil
import sys

import duckdb
import pytest
import yaml

from tests.chain import DATASET, TRAIN_RUN_NAME
from tests.faults import FileAppears, LogLine, command_env, kill_at, run_to_end

SPEC = {
    "name": "faults", "version": 1,
    "data": {"dataset": DATASET, "split": "test", "subset": {"n_per_task": 3, "seed": 0}},
    "models": [{"name": "tiny-base", "kind": "base", "training_run_id": "latest", "training_run_name": TRAIN_RUN_NAME},
               {"name": "tiny-lora", "kind": "adapter", "training_run_id": "latest",
                "training_run_name": TRAIN_RUN_NAME}],
    "generation": {"max_new_tokens": 8, "yes_no": "score"},
    "judge": {"enabled": False},
    "bootstrap": {"n": 50, "seed": 0},
}
METRICS = ("select run_id, task, metric, round(value, 6), round(ci_low, 6), round(ci_high, 6), n_items "
           "from evaluation.task_metrics order by all")


def _compare_with_uninterrupted(db, base_copy, spec_path, monkeypatch):
    from evaluation.runner import evaluate
    from evaluation.spec import load_spec

    other = db.parent / "uninterrupted.duckdb"
    shutil.copy(base_copy, other)
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(other))
    evaluate(load_spec(spec_path, ["build_results=false"]), progress=False)
    with duckdb.connect(str(db), read_only=True) as a, duckdb.connect(str(other), read_only=True) as b:
        assert a.execute(METRICS).fetchall() == b.execute(METRICS).fetchall()
        # one prediction per item per run: nothing duplicated by the kill and the re-run
        dup = "select count(*) from (select run_id, instruction_id from evaluation.predictions group by all having count(*) > 1)"
        assert a.execute(dup).fetchone()[0] == 0
        assert a.execute("select count(*) from evaluation.predictions").fetchone()[0] == \
            b.execute("select count(*) from evaluation.predictions").fetchone()[0]
        assert a.execute("select distinct status from meta.runs where job = 'evaluate'").fetchall() == [("succeeded",)]


def _spec_file(tmp_path):
    path = tmp_path / "faults.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


@pytest.mark.slow
def test_evaluation_killed_between_models_reruns_to_the_same_scores(eval_warehouse, eval_warehouse_base, tmp_path,
                                                                    monkeypatch):
    """Killed once the second model's run has started; the re-run, from a folder outside the repo and without
    MIMIC_ROOT (its results step reads no raw file), ends with the scores of an uninterrupted run."""
    spec = _spec_file(tmp_path)
    cmd = [sys.executable, "-m", "evaluation.cli", "--config", str(spec), "--no-progress"]
    kill_at(cmd, LogLine(r"evaluating tiny-lora"))
    with duckdb.connect(str(eval_warehouse), read_only=True) as con:
        assert ("running",) in con.execute("select status from meta.runs where job = 'evaluate'").fetchall()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = run_to_end(cmd, env=command_env(MIMIC_ROOT=None, MIMIC_NOTE_ROOT=None), cwd=elsewhere)
    assert res.returncode == 0, res.output[-3000:]
    with duckdb.connect(str(eval_warehouse), read_only=True) as con:
        assert con.execute("select count(*) from results.results_leaderboard where spec_name = 'faults'"
                           ).fetchone()[0] > 0
    _compare_with_uninterrupted(eval_warehouse, eval_warehouse_base, spec, monkeypatch)


@pytest.mark.slow
def test_evaluation_killed_in_the_results_step(eval_warehouse, eval_warehouse_base, dbt_env, tmp_path, monkeypatch):
    """Killed while dbt builds the results marts (its compiled SQL for a results model appears)."""
    import os
    from pathlib import Path

    spec = _spec_file(tmp_path)
    cmd = [sys.executable, "-m", "evaluation.cli", "--config", str(spec), "--no-progress"]
    target = Path(os.environ["DBT_TARGET_PATH"])
    shutil.rmtree(target / "run", ignore_errors=True)
    kill_at(cmd, FileAppears(target, "run/ehrforge/models/results/*.sql"))
    res = run_to_end(cmd)
    assert res.returncode == 0, res.output[-3000:]
    _compare_with_uninterrupted(eval_warehouse, eval_warehouse_base, spec, monkeypatch)
