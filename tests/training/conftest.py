"""Fixtures for the training tests: a small crafted warehouse with the data-contract tables, and a tiny model.

The warehouse is `training.synthetic` (lookup QA over short rendered records, notes, patient-level splits): a crafted
set on purpose. These tests assert that a random tiny model's loss falls measurably within 20 steps, that a resumed
run equals an uninterrupted one, that an adapter reloads to the same logits, and they run a dozen trainings: that
needs short (~90-token), learnable conversations. The real demo instruction set goes through the same code in the
session chain (tests/chain.py; tests/training/test_demo_e2e.py). To run these tests on a real warehouse, point
EHRFORGE_TRAIN_TEST_DUCKDB at a DuckDB file holding synthesis.instructions (dataset "demo"), marts.fct_notes
and marts.dim_splits; it is copied, never written.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Small rows keep the CPU tests fast: the synthetic conversations are ~90 tokens.
FAST = [
    "data.max_seq_len=512", "speed.pack_tokens=512", "speed.packs_per_batch=1", "train.logging_steps=1", "train.eval_steps=null",
    "train.save_steps=1000", "model.tiny.vocab_size=1024", "model.tiny.max_texts=600",
]


@pytest.fixture(scope="session")
def fast() -> list[str]:
    """Overrides that keep CPU training tests small (test modules do not import from conftest)."""
    return list(FAST)


@pytest.fixture(scope="session")
def warehouse_file(tmp_path_factory) -> Path:
    src = os.environ.get("EHRFORGE_TRAIN_TEST_DUCKDB")
    dst = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    if src:
        shutil.copy(src, dst)
    else:
        from training.synthetic import build_synthetic_warehouse

        build_synthetic_warehouse(dst, n_patients=80, seed=0)
    return dst


@pytest.fixture()
def train_env(warehouse_file, tmp_path, monkeypatch) -> Path:
    """A private copy of the warehouse and runs dir per test (records are written into the copy)."""
    db = tmp_path / "warehouse.duckdb"
    shutil.copy(warehouse_file, db)
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(db))
    monkeypatch.setenv("EHRFORGE_RUNS", str(tmp_path / "runs"))
    return tmp_path


@pytest.fixture(scope="session")
def tiny_model_dir(warehouse_file, tmp_path_factory) -> Path:
    from ehrforge import warehouse
    from ehrforge.tiny_model import build_tiny_model

    with warehouse.session(warehouse_file, read_only=True) as con:
        texts = [r[0] + " " + r[1] + " " + r[2] for r in con.execute(
            "select context, instruction, answer from synthesis.instructions order by instruction_id limit 600"
        ).fetchall()]
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", texts, vocab_size=1024)
