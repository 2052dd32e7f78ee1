"""Evaluation fixtures: the demo warehouse + an instruction set built from its marts + the tiny model + a tiny LoRA
fine-tune recorded in training.runs, prepared once per session; each test gets a private copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TRAIN_RUN_ID = "train-fixture-lora"
TRAIN_RUN_NAME = "eval-fixture-tiny-lora"


@pytest.fixture(scope="session")
def eval_runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def eval_warehouse_base(demo_warehouse, tmp_path_factory, eval_runs_dir) -> Path:
    from ehrforge import warehouse
    from evaluation.models import tiny_model
    from tests.evaluation.instructions_fixture import DATASET, write_instructions
    from tests.evaluation.lora_fixture import record_training_run, train_tiny_lora

    path = tmp_path_factory.mktemp("evalwh") / "warehouse.duckdb"
    shutil.copy(demo_warehouse, path)
    with pytest.MonkeyPatch.context() as mp, warehouse.session(path) as con:
        mp.setenv("EHRFORGE_RUNS", str(eval_runs_dir))  # the tiny model goes here, not into the repo's runs/
        write_instructions(con)
        base = tiny_model(con)
        adapter = train_tiny_lora(con, base, eval_runs_dir / "lora", DATASET, steps=20)
        record_training_run(con, TRAIN_RUN_ID, TRAIN_RUN_NAME, base, str(adapter))
    return path


@pytest.fixture
def eval_warehouse(eval_warehouse_base, tmp_path, monkeypatch) -> Path:
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(eval_warehouse_base, path)
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(path))
    return path
