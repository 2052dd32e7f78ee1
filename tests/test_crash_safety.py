"""Crash safety that needs no kill: one build check for every job, build markers, one warehouse path, one lock
message, exit codes, runs marked failed with the reason, raw-input failures that name the file and the fix.
The kill-and-rerun cases are in test_fault_injection.py; docs/crash-safety.md lists the guarantees."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from ehrforge import warehouse
from ehrforge.build import preflight, run_dbt
from ehrforge.errors import InputDataError, WarehouseError
from ehrforge.paths import DBT_PROJECT_DIR, REPO_ROOT


def _open_marker(db: Path, status: str) -> None:
    """A build row as a killed (`running`) or failed build leaves it, newer than the demo build's."""
    with warehouse.session(db) as con:
        con.execute("insert into meta.dbt_builds (invocation_id, command, n_errors, failed_nodes, started_at, status, "
                    "touches_marts) values ('killed-build', 'build', ?, ?, now()::timestamp, ?, "
                    "true)", [1 if status == "failed" else None, "dim_admissions" if status == "failed" else None,
                              status])


# ---------------------------------------------------------------------------------------------- 1. builds


def test_a_build_opens_its_marker_first_and_closes_it(demo_warehouse):
    with warehouse.session(demo_warehouse, read_only=True) as con:
        status, touches, started, finished = warehouse.fetch_one(
            con, "select status, touches_marts, started_at, finished_at from meta.dbt_builds")
        warehouse.require_finished_build(con)
    assert status == "succeeded" and touches and started <= finished


@pytest.mark.parametrize("status", ["running", "failed"])
def test_synthesis_training_and_evaluation_refuse_an_unfinished_or_failed_build(chain_copy, status, tmp_path,
                                                                                 monkeypatch):
    """The one check (warehouse.require_finished_build) in all three jobs, and exit code 2 from each command."""
    from evaluation import cli as eval_cli
    from synthesis import cli as synth_cli
    from training import launch

    # the chain's warehouse: training and evaluation have their input, so only the check can stop them
    monkeypatch.setenv("EHRFORGE_RUNS", str(tmp_path / "runs"))
    _open_marker(chain_copy, status)
    expected = "did not finish" if status == "running" else "failed"
    assert synth_cli.main(["--config", "synthesis/configs/demo.yaml", "--quiet"]) == 2
    assert launch.main(["--config", "training/configs/demo/tiny_lora.yaml", "output.record=false"]) == 2
    with pytest.raises(SystemExit) as exit_info:
        eval_cli.main(["--config", "evaluation/specs/demo.yaml", "--no-progress"])
    assert exit_info.value.code == 2
    for job in (lambda: launch.prepare(launch.load_train_config("training/configs/demo/tiny_lora.yaml"), tmp_path),):
        with pytest.raises(WarehouseError, match=f"last dbt build .*{expected}"):
            job()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.jsonl"))


@pytest.mark.slow
def test_a_results_only_build_needs_no_raw_files_and_does_not_bless_failed_marts(warehouse_copy, dbt_env, tmp_path,
                                                                                 monkeypatch):
    """`dbt build --select source:evaluation+` (evaluation's results step) without MIMIC_ROOT, and run from another
    folder without EHRFORGE_DUCKDB: it builds the results marts in the warehouse ehrforge.paths names, and a failed
    marts build before it stays refused."""
    import ehrforge.paths

    repo = tmp_path / "repo"
    (repo / "warehouse").mkdir(parents=True)
    os.replace(warehouse_copy, repo / "warehouse" / "ehrforge.duckdb")
    monkeypatch.setattr(ehrforge.paths, "REPO_ROOT", repo)  # the default warehouse path follows the repo root
    monkeypatch.delenv("EHRFORGE_DUCKDB")
    monkeypatch.delenv("MIMIC_ROOT")
    elsewhere = tmp_path / "elsewhere" / "sub"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    db = repo / "warehouse" / "ehrforge.duckdb"
    _open_marker(db, "failed")
    assert run_dbt(["build", "--select", "source:evaluation+", "--quiet"])
    assert not (tmp_path / "elsewhere" / "warehouse").exists()  # the profile's cwd-relative default was not used
    with warehouse.session(db, read_only=True) as con:
        assert warehouse.table_exists(con, "results.results_leaderboard")
        last = warehouse.fetch_one(con, "select touches_marts, status from meta.dbt_builds "
                                   "order by started_at desc limit 1")
        assert last == (False, "succeeded")
        with pytest.raises(WarehouseError, match="last dbt build .* failed"):
            warehouse.require_finished_build(con)


def test_the_profile_default_is_the_python_default(monkeypatch):
    """dbt run from dbt_project/ (as the profile says) and Python agree on the warehouse without EHRFORGE_DUCKDB."""
    import re

    monkeypatch.delenv("EHRFORGE_DUCKDB", raising=False)
    text = (DBT_PROJECT_DIR / "profiles.yml").read_text()
    default = re.search(r"env_var\('EHRFORGE_DUCKDB', '([^']+)'\)", text).group(1)
    assert (DBT_PROJECT_DIR / default).resolve() == warehouse.warehouse_path()


# ------------------------------------------------------------------------------------------- 4. commands


def _hold_lock(db: Path) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import duckdb, time
            con = duckdb.connect({str(db)!r})
            print("locked", flush=True)
            time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_dbt_build_on_a_locked_warehouse_gives_the_one_lock_message(warehouse_copy):
    """What every job prints (warehouse.lock_message), not a dbt traceback, from a build that Python starts."""
    holder = _hold_lock(warehouse_copy)
    try:
        with pytest.raises(WarehouseError) as from_python:
            warehouse.connect(warehouse_copy)
        with pytest.raises(WarehouseError) as from_dbt:
            run_dbt(["build", "--select", "source:evaluation+", "--quiet"])
    finally:
        holder.kill()
        holder.wait()
    norm = lambda e: str(e.value).split(" (held by")[0]
    assert "is locked by another process" in str(from_dbt.value)
    assert norm(from_dbt) == norm(from_python)


def test_exit_codes_mean_the_same_in_every_command(tmp_path):
    """2: bad input or config (here a spec/config file that does not exist), in every job's CLI."""
    from evaluation import cli as eval_cli
    from synthesis import cli as synth_cli
    from training import launch

    missing = str(tmp_path / "nope.yaml")
    assert synth_cli.main(["--config", missing]) == 2
    assert launch.main(["--config", missing]) == 2
    with pytest.raises(SystemExit) as exit_info:
        eval_cli.main(["--config", missing])
    assert exit_info.value.code == 2


def test_a_failed_synthesis_marks_its_run_failed_with_the_reason(warehouse_copy, tmp_path, monkeypatch):
    from synthesis.cli import synthesize
    from synthesis.config import load_synthesis_config

    monkeypatch.setenv("EHRFORGE_RUNS", str(tmp_path / "runs"))
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "mine.txt").write_text("not an export")  # the export refuses this folder
    cfg = load_synthesis_config("synthesis/configs/demo.yaml", [
        "progress=false", f"export_dir={tmp_path}/export", "tasks.template_qa.quota=20", "render.tokenizer=null",
        *[f"tasks.{t}.enabled=false" for t in ("risk_prediction", "decision_making", "note_generation", "note_qa",
                                               "note_reasoning_qa", "question_paraphrase")]])
    with pytest.raises(Exception, match="holds files an export does not write"):
        synthesize(cfg)
    with warehouse.session(read_only=True) as con:
        status, error = warehouse.fetch_one(con, "select status, error from meta.runs where job = 'synthesis'")
    assert status == "failed" and "export does not write" in error


# ----------------------------------------------------------------------------------------- 5. raw input


def test_a_header_only_table_fails_whatever_the_data_size(linked_demo_copy, tmp_path, mimic_root):
    """Preflight: a file with the right header and no rows (a cut-off download) is named, with the fix."""
    root = linked_demo_copy
    header = gzip.decompress((mimic_root / "hosp" / "transfers.csv.gz").read_bytes()).decode().splitlines()[0]
    (root / "hosp" / "transfers.csv.gz").unlink()
    (root / "hosp" / "transfers.csv.gz").write_bytes(gzip.compress((header + "\n").encode()))
    with pytest.raises(InputDataError, match=r"transfers\.csv\.gz .*has a header but no rows.*(?i:download it again)"):
        preflight(str(root), None)


@pytest.mark.slow
def test_dbt_itself_stops_on_a_header_only_table(linked_demo_copy, tmp_path, mimic_root, dbt_env, monkeypatch):
    """`dbt build` without the Python preflight stops in the source hook with the same message (full-size checks
    such as the demo row counts are off on a full copy, so they cannot be what catches it)."""
    root = linked_demo_copy
    header = gzip.decompress((mimic_root / "icu" / "icustays.csv.gz").read_bytes()).decode().splitlines()[0]
    (root / "icu" / "icustays.csv.gz").unlink()
    (root / "icu" / "icustays.csv.gz").write_bytes(gzip.compress((header + "\n").encode()))
    monkeypatch.setenv("MIMIC_ROOT", str(root))
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(tmp_path / "w.duckdb"))
    with pytest.raises(InputDataError, match=r"icustays\.csv\.gz \(MIMIC-IV table icu/icustays\) has a header but no"):
        run_dbt(["run", "--select", "stg_mimic_icu__icustays", "--quiet"])


@pytest.mark.slow
def test_impossible_admission_times_warn_are_flagged_and_get_no_time_label(warehouse_copy, dbt_env):
    """dischtime < admittime: the build goes on (a warn-level test counts them), dim_admissions flags the row and
    fct_outcomes gives it no time-based label."""
    con = duckdb.connect(str(warehouse_copy))
    hadm = con.execute("select hadm_id from marts.fct_outcomes where task = 'readmission_30d' order by hadm_id "
                       "limit 1").fetchone()[0]
    con.execute("update staging.stg_mimic_hosp__admissions set dischtime = admittime - interval 2 hour "
                "where hadm_id = ?", [hadm])
    con.close()
    assert run_dbt(["build", "--select", "dim_admissions fct_outcomes assert_admission_times_ordered", "--quiet",
                    "--exclude", "resource_type:unit_test"])
    results = json.loads((Path(dbt_env["DBT_TARGET_PATH"]) / "run_results.json").read_text())["results"]
    warned = [r for r in results if r["unique_id"].endswith("assert_admission_times_ordered")]
    assert warned and warned[0]["status"] == "warn" and warned[0]["failures"] == 1
    with warehouse.session(warehouse_copy, read_only=True) as con:
        assert warehouse.fetch_scalar(con, "select is_dischtime_before_admittime from marts.dim_admissions "
                                      "where hadm_id = ?", [hadm]) is True
        assert warehouse.fetch_scalar(con, "select count(*) from marts.fct_outcomes where hadm_id = ? "
                                      "and stay_id is null", [hadm]) == 0
        assert warehouse.fetch_scalar(con, "select count(*) from marts.dim_admissions "
                                      "where is_dischtime_before_admittime") == 1
        warehouse.require_finished_build(con)  # a warning is not a failed build


def test_build_cli_exits_2_on_bad_input_from_any_folder(tmp_path):
    """The build command, run from a folder outside the repo, exits 2 (bad input) with the message, no traceback."""
    env = {k: v for k, v in os.environ.items() if k != "EHRFORGE_DUCKDB"}
    env["MIMIC_ROOT"] = str(tmp_path / "nowhere")
    env["EHRFORGE_DUCKDB"] = str(tmp_path / "w.duckdb")
    env["PYTHONPATH"] = str(REPO_ROOT)
    res = subprocess.run([sys.executable, "-m", "ehrforge.build"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "has no hosp/ folder" in res.stderr and "Traceback" not in res.stderr
