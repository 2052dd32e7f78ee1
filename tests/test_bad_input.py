"""Bad input stops with a message naming the file or column and the fix; nothing half-built looks complete."""

from __future__ import annotations

import gzip
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
from ehrforge.paths import REPO_ROOT


def _replace(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def test_missing_mimic_root_names_the_variable():
    with pytest.raises(InputDataError, match="MIMIC_ROOT is not set"):
        preflight(None, None)


def test_build_cli_without_mimic_root_exits_with_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MIMIC_ROOT", "MIMIC_NOTE_ROOT")}
    env["EHRFORGE_DUCKDB"] = str(tmp_path / "w.duckdb")
    res = subprocess.run([sys.executable, "-m", "ehrforge.build"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert "MIMIC_ROOT is not set" in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_table_names_file_and_fix(linked_demo_copy, tmp_path, mimic_root):
    root = linked_demo_copy
    (root / "hosp" / "labevents.csv.gz").unlink()
    with pytest.raises(InputDataError, match=r"missing MIMIC-IV table hosp/labevents: expected .*labevents\.csv\.gz"):
        preflight(str(root), None)


def test_corrupt_gzip_names_file(linked_demo_copy, tmp_path, mimic_root):
    root = linked_demo_copy
    _replace(root / "hosp" / "admissions.csv.gz", b"this is not gzip data")
    with pytest.raises(InputDataError, match=r"cannot read .*admissions\.csv\.gz.*corrupt"):
        preflight(str(root), None)


def test_renamed_column_names_column(linked_demo_copy, tmp_path, mimic_root):
    root = linked_demo_copy
    text = gzip.decompress((mimic_root / "hosp" / "patients.csv.gz").read_bytes()).decode()
    _replace(root / "hosp" / "patients.csv.gz", gzip.compress(text.replace("anchor_age", "age_anchor", 1).encode()))
    with pytest.raises(InputDataError, match=r"patients\.csv\.gz lacks column\(s\) anchor_age"):
        preflight(str(root), None)


def test_csv_and_parquet_layouts_are_read(linked_demo_copy, tmp_path, mimic_root):
    """A table may be .csv.gz, .csv or .parquet; the preflight accepts each."""
    root = linked_demo_copy
    (root / "hosp" / "patients.csv.gz").unlink()
    (root / "hosp" / "patients.csv").write_bytes(gzip.decompress((mimic_root / "hosp" / "patients.csv.gz").read_bytes()))
    (root / "icu" / "icustays.csv.gz").unlink()
    duckdb.sql(f"copy (select * from read_csv('{mimic_root}/icu/icustays.csv.gz')) to '{root}/icu/icustays.parquet'")
    preflight(str(root), None)


@pytest.mark.slow  # 4-8 s (a dbt invocation / extra training run): keeps the default run under 4 min
def test_dbt_itself_names_a_missing_table(linked_demo_copy, tmp_path, mimic_root, dbt_env, monkeypatch):
    """Users who run `dbt build` directly (no preflight) get the same kind of message from the hook."""
    root = linked_demo_copy
    (root / "icu" / "icustays.csv.gz").unlink()
    monkeypatch.setenv("MIMIC_ROOT", str(root))
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(tmp_path / "w.duckdb"))
    from dbt.cli.main import dbtRunner

    from ehrforge.build import release_dbt_connection
    from ehrforge.paths import DBT_PROJECT_DIR

    try:
        res = dbtRunner().invoke(["run", "--select", "stg_mimic_icu__icustays", "--project-dir", str(DBT_PROJECT_DIR),
                                  "--profiles-dir", str(DBT_PROJECT_DIR), "--quiet"])
    finally:
        release_dbt_connection()
    assert not res.success
    assert "missing MIMIC-IV table icu/icustays" in str(res.exception or res.result)


@pytest.mark.slow  # 6-7 s (a dbt build that fails in its source hook); the preflight's gzip check is in the default run
def test_truncated_gzip_stops_build_naming_file(linked_demo_copy, tmp_path, mimic_root, dbt_env, monkeypatch):
    """An interrupted download (valid header, truncated body) passes the cheap preflight; dbt's source hook then
    stops before any model runs, naming the file and the fix, and the build is recorded as failed."""
    from ehrforge.errors import EhrforgeError

    root = linked_demo_copy
    data = (mimic_root / "hosp" / "labevents.csv.gz").read_bytes()
    _replace(root / "hosp" / "labevents.csv.gz", data[: len(data) // 2])
    monkeypatch.setenv("MIMIC_ROOT", str(root))
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(tmp_path / "w.duckdb"))
    preflight(str(root), os.environ["MIMIC_NOTE_ROOT"])
    with pytest.raises(InputDataError, match=r"(?s)labevents\.csv\.gz.*GZIP.*Fix: download the file again"):
        run_dbt(["build", "--quiet"])
    with warehouse.session(tmp_path / "w.duckdb") as con:
        assert not warehouse.table_exists(con, "marts.fct_events")
        # the hook failed before on-run-end: the build marker is closed as failed, not left looking fine
        assert warehouse.fetch_one(con, "select status from meta.dbt_builds") == ("failed",)


@pytest.mark.slow
def test_failed_build_is_recorded_and_marts_are_refused(linked_demo_copy, tmp_path, mimic_root, dbt_env, monkeypatch):
    """A value that cannot be typed fails a model mid-build; the failure is recorded in meta.dbt_builds and Python
    jobs refuse the marts instead of reading a half-built warehouse."""
    root = linked_demo_copy
    text = gzip.decompress((mimic_root / "icu" / "outputevents.csv.gz").read_bytes()).decode().splitlines()
    fields = text[1].split(",")
    fields[7] = "not-a-number"  # the `value` column
    text[1] = ",".join(fields)
    _replace(root / "icu" / "outputevents.csv.gz", gzip.compress(("\n".join(text) + "\n").encode()))
    db = tmp_path / "w.duckdb"
    monkeypatch.setenv("MIMIC_ROOT", str(root))
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(db))
    assert not run_dbt(["build", "--quiet", "--exclude", "resource_type:unit_test"])
    with warehouse.session(db) as con:
        n_errors, failed_nodes = warehouse.fetch_one(con, "select n_errors, failed_nodes from meta.dbt_builds")
        assert n_errors > 0 and "outputevents" in failed_nodes
        with pytest.raises(WarehouseError, match="last dbt build .* failed"):
            warehouse.require_tables(con, ["marts.dim_admissions"])


def test_locked_warehouse_says_who_and_how(tmp_path):
    db = tmp_path / "locked.duckdb"
    duckdb.connect(str(db)).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import duckdb, sys, time
            con = duckdb.connect({str(db)!r})
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WarehouseError, match="locked by another process.*retry"):
            warehouse.connect(db)
    finally:
        holder.kill()
        holder.wait()
    warehouse.connect(db).close()  # usable again once the holder is gone


def test_write_table_is_idempotent_per_run_and_atomic(tmp_path):
    import pandas as pd

    with warehouse.session(tmp_path / "w.duckdb") as con:
        run = warehouse.start_run(con, job="test", config={"a": 1})
        df = pd.DataFrame({"x": [1, 2, 3]})
        warehouse.write_table(con, "scratch.t", df, run)
        warehouse.write_table(con, "scratch.t", df, run)
        assert con.execute("select count(*) from scratch.t").fetchall()[0][0] == 3
        with pytest.raises(WarehouseError, match="different columns"):
            warehouse.write_table(con, "scratch.t", pd.DataFrame({"y": [1]}), run)
        assert con.execute("select count(*) from scratch.t").fetchall()[0][0] == 3
        assert warehouse.start_run(con, job="test", config={"a": 1}).run_id == run.run_id
