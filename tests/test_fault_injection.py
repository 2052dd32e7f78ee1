"""Fault injection on the real commands, build and synthesis (training: tests/training/test_faults_train.py,
evaluation: tests/evaluation/test_faults_eval.py): start the command as a subprocess, SIGKILL it at a named point,
check that no job accepts what it left, re-run it, and compare with an uninterrupted run. The long cases are slow.
"""

from __future__ import annotations

import shutil
import sys

import duckdb
import pytest

from ehrforge import warehouse
from ehrforge.errors import WarehouseError
from tests.faults import LogLine, command_env, kill_at, run_to_end

PY = sys.executable
RUN_COLUMNS = "run_id, created_at, code_version, config_hash"


def fingerprint(db, table: str, exclude: str = "") -> tuple:
    """Row count and an order-free hash of every row (run metadata left out)."""
    with duckdb.connect(str(db), read_only=True) as con:
        ex = f" exclude ({exclude})" if exclude else ""
        return con.execute(f"select count(*), sum(hash(t)) from (select *{ex} from {table}) t").fetchone()


def _refused_by_every_job(db) -> None:
    from synthesis import cli as synth_cli

    with warehouse.session(db, read_only=True) as con:
        with pytest.raises(WarehouseError, match="did not finish"):
            warehouse.require_finished_build(con)
    assert synth_cli.main(["--config", "synthesis/configs/demo.yaml", "--quiet"]) == 2


# ------------------------------------------------------------------------------------------------- build


@pytest.mark.slow
def test_build_killed_after_dim_admissions_is_refused_then_completes(warehouse_copy, demo_warehouse, dbt_env):
    """The issue's case: a rebuild killed after dim_admissions was rebuilt and before fct_outcomes. The marker stays
    `running`, every job refuses the mix; the re-run gives the same marts as the uninterrupted build."""
    cmd = [PY, "-m", "ehrforge.build", "--select", "dim_admissions", "fct_outcomes", "--exclude",
           "resource_type:unit_test"]
    kill_at(cmd, LogLine(r"OK created sql table model marts\.dim_admissions"))
    _refused_by_every_job(warehouse_copy)
    res = run_to_end(cmd)
    assert res.returncode == 0, res.output[-3000:]
    for table in ("marts.dim_admissions", "marts.fct_outcomes"):
        assert fingerprint(warehouse_copy, table) == fingerprint(demo_warehouse, table), table
    with warehouse.session(warehouse_copy, read_only=True) as con:
        warehouse.require_finished_build(con)
        statuses = [r[0] for r in con.execute("select status from meta.dbt_builds order by started_at").fetchall()]
    assert statuses == ["succeeded", "running", "succeeded"]  # the killed build's row keeps saying what happened


@pytest.mark.slow
def test_full_build_killed_midway_from_scratch(tmp_path, demo_warehouse, dbt_env, monkeypatch):
    """A first build into an empty warehouse killed once marts are being written; the re-run equals the demo build."""
    db = tmp_path / "w.duckdb"
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(db))
    cmd = [PY, "-m", "ehrforge.build"]
    kill_at(cmd, LogLine(r"OK created sql table model marts\.dim_admissions"), timeout=600)
    _refused_by_every_job(db)
    res = run_to_end(cmd, timeout=900)
    assert res.returncode == 0, res.output[-3000:]
    for table in ("marts.dim_admissions", "marts.dim_icustays", "marts.dim_splits", "marts.fct_outcomes",
                  "marts.fct_notes", "marts.fct_note_sections"):
        assert fingerprint(db, table) == fingerprint(demo_warehouse, table), table
    assert fingerprint(db, "marts.fct_events", "event_id")[0] == fingerprint(demo_warehouse, "marts.fct_events")[0]


# --------------------------------------------------------------------------------------------- synthesis


def _synth_overrides(runs, export) -> list[str]:
    off = ("decision_making", "note_generation", "note_qa", "note_reasoning_qa", "question_paraphrase")
    return ["progress=false", "tasks.template_qa.quota=40", "tasks.risk_prediction.quota=20",
            *[f"tasks.{t}.enabled=false" for t in off], "render.tokenizer=generator",
            f"generator.llm.model={runs}/tiny-llama", f"export_dir={export}"]


INSTRUCTION_CONTENT = "select instruction_id, task, split, subject_id, context, instruction, answer from " \
                      "synthesis.instructions order by instruction_id"


@pytest.mark.slow
def test_synthesis_killed_while_building_the_tiny_model(warehouse_copy, demo_warehouse, tmp_path, monkeypatch):
    """Killed while the tiny model was being written: no half-built model is left where later runs look, an empty
    folder an older version left there is rebuilt over, and the re-run equals an uninterrupted run."""
    from synthesis.cli import synthesize
    from synthesis.config import load_synthesis_config
    from ehrforge.tiny_model import tiny_model_complete

    runs, export = tmp_path / "runs", tmp_path / "export"
    cmd = [PY, "-m", "synthesis.cli", "--config", "synthesis/configs/demo.yaml", *_synth_overrides(runs, export)]
    kill_at(cmd, LogLine(r"building the tiny random model"))
    model = runs / "tiny-llama"
    assert not model.exists() or tiny_model_complete(model)
    model.mkdir(parents=True, exist_ok=True)  # what a kill left there before models were written atomically
    res = run_to_end(cmd)
    assert res.returncode == 0, res.output[-3000:]
    assert tiny_model_complete(model) and not list(runs.glob(".tiny-llama.tmp-*"))

    other = tmp_path / "uninterrupted.duckdb"
    shutil.copy(demo_warehouse, other)
    cfg = load_synthesis_config("synthesis/configs/demo.yaml", _synth_overrides(tmp_path / "runs-b",
                                                                                 tmp_path / "export-b"))
    with duckdb.connect(str(other)) as con:
        synthesize(cfg, con=con)
    with duckdb.connect(str(warehouse_copy), read_only=True) as a, duckdb.connect(str(other), read_only=True) as b:
        assert a.execute(INSTRUCTION_CONTENT).fetchall() == b.execute(INSTRUCTION_CONTENT).fetchall()
        assert a.execute("select status, count(*) from meta.runs where job = 'synthesis' group by 1").fetchall() \
            == [("succeeded", 1)]
    for split in ("train", "val", "test"):
        assert (export / f"{split}.jsonl").read_text().count("\n") == (tmp_path / "export-b" / f"{split}.jsonl"
                                                                      ).read_text().count("\n")


@pytest.mark.slow
def test_synthesis_killed_between_tasks_and_during_the_export(warehouse_copy, tmp_path):
    """Killed after the first task and again while the export folder is being written: the instructions and the
    export of the re-run are whole (no mix of old and new splits)."""
    runs, export = tmp_path / "runs", tmp_path / "export"
    cmd = [PY, "-m", "synthesis.cli", "--config", "synthesis/configs/demo.yaml", *_synth_overrides(runs, export)]
    kill_at(cmd, LogLine(r"template_qa: \d+ rows"))
    first = run_to_end(cmd)
    assert first.returncode == 0, first.output[-3000:]
    before = {p.name: p.read_bytes() for p in export.iterdir() if p.name != ".complete"}
    from tests.faults import FileAppears

    kill_at(cmd + ["seed=1"], FileAppears(tmp_path, ".export.tmp-*/val.jsonl"))
    assert {p.name: p.read_bytes() for p in export.iterdir() if p.name != ".complete"} == before  # untouched
    again = run_to_end(cmd)
    assert again.returncode == 0
    assert {p.name: p.read_bytes() for p in export.iterdir() if p.name != ".complete"}.keys() == before.keys()
