"""Shared fixtures. Everything builds from the real MIMIC-IV demo (MIMIC_ROOT, default ../shared/data).

`demo_warehouse` runs the demo-notes adapter and a full in-process `dbt build` once per test session into
a temporary DuckDB file and points EHRFORGE_DUCKDB at it; tests that write must copy it first
(`warehouse_copy`) so they never disturb each other. `demo_chain` continues from it through the real chain
(synthesize -> train -> evaluate, tests/chain.py), once per session; `chain_copy` is a writable copy of its result.
Environment changes go through monkeypatch (`session_env` for the session-scoped ones), so they are undone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ehrforge.paths import REPO_ROOT

SHARED = REPO_ROOT.parent / "shared" / "data"


def _mimic_root() -> Path:
    root = Path(os.environ.get("MIMIC_ROOT", SHARED / "mimic-iv-demo"))
    if not (root / "hosp").is_dir():
        pytest.fail(f"the MIMIC-IV demo is not at {root}: set MIMIC_ROOT (CI uses ../shared/data/mimic-iv-demo)")
    return root


def _pmc_csv() -> Path:
    path = Path(os.environ.get("PMC_PATIENTS_CSV", SHARED / "pmc-patients-sample" / "pmc_patients_sample.csv"))
    if not path.is_file():
        pytest.fail(f"PMC-Patients sample not at {path}: set PMC_PATIENTS_CSV")
    return path


@pytest.fixture(scope="session")
def mimic_root() -> Path:
    return _mimic_root()


@pytest.fixture(scope="session")
def demo_note_root(tmp_path_factory, mimic_root) -> Path:
    from ehrforge.demo_data import build_demo_notes

    out = tmp_path_factory.mktemp("demo-note") / "note"
    build_demo_notes(mimic_root, _pmc_csv(), out)
    return out


@pytest.fixture(scope="session")
def session_env():
    """monkeypatch for session-scoped fixtures: their environment is restored when the session ends."""
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="session")
def dbt_env(tmp_path_factory, mimic_root, demo_note_root, session_env):
    """Environment for in-process dbt runs: inputs, and target/log paths outside the source tree."""
    tmp = tmp_path_factory.mktemp("dbt")
    env = {
        "MIMIC_ROOT": str(mimic_root),
        "MIMIC_NOTE_ROOT": str(demo_note_root),
        "PMC_PATIENTS_CSV": str(_pmc_csv()),  # public case reports (marts.dim_case_reports)
        "DBT_TARGET_PATH": str(tmp / "target"),
        "DBT_LOG_PATH": str(tmp / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    for k, v in env.items():
        session_env.setenv(k, v)
    return env


@pytest.fixture(scope="session")
def demo_warehouse(tmp_path_factory, dbt_env, session_env) -> Path:
    """A DuckDB warehouse built by `dbt build` over the real demo. Treat as read-only."""
    from ehrforge.build import run_dbt

    path = tmp_path_factory.mktemp("warehouse") / "demo.duckdb"
    session_env.setenv("EHRFORGE_DUCKDB", str(path))
    if not run_dbt(["build", "--quiet"]):
        pytest.fail("dbt build on the demo failed; run `make build` to see why")
    return path


@pytest.fixture
def warehouse_copy(demo_warehouse, tmp_path, monkeypatch) -> Path:
    """A private, writable copy of the demo warehouse; EHRFORGE_DUCKDB points at it for this test."""
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(demo_warehouse, path)
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(path))
    return path


@pytest.fixture
def linked_demo_copy(mimic_root, tmp_path) -> Path:
    """The demo's hosp/ and icu/ laid out again with every file symlinked, so a test can replace single files."""
    dst = tmp_path / "mimic"
    for module in ("hosp", "icu"):
        (dst / module).mkdir(parents=True)
        for f in (mimic_root / module).iterdir():
            (dst / module / f.name).symlink_to(f)
    return dst


@pytest.fixture(scope="session")
def demo_chain(demo_warehouse, tmp_path_factory):
    """The real chain on the demo, once per session (tests/chain.py): dbt build -> synthesize twice -> train a tiny
    LoRA through training.launch -> evaluate it and its base (results marts rebuilt by dbt)."""
    from ehrforge import warehouse
    from evaluation.runner import evaluate
    from synthesis.cli import synthesize
    from synthesis.config import load_synthesis_config
    from tests import chain
    from training.config import load_train_config, run_id_for
    from training.launch import train

    tmp = tmp_path_factory.mktemp("chain")
    path, runs = tmp / "warehouse.duckdb", tmp / "runs"
    shutil.copy(demo_warehouse, path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EHRFORGE_DUCKDB", str(path))
        mp.setenv("EHRFORGE_RUNS", str(runs))
        cfg = load_synthesis_config(chain.SYNTH_CONFIG, chain.synth_overrides(tmp))
        with warehouse.session(path) as con:
            first = synthesize(cfg, con=con)
            second = synthesize(cfg, con=con)
        tcfg = load_train_config(chain.TRAIN_CONFIG, chain.TRAIN_OVERRIDES)
        (summary,) = train(tcfg)
        summaries = evaluate(chain.eval_spec(), progress=False)
    return chain.DemoChain(path, runs, tmp, cfg, first, second, run_id_for(tcfg), summary, summaries)


@pytest.fixture
def chain_copy(demo_chain, tmp_path, monkeypatch) -> Path:
    """A private, writable copy of the chain's warehouse; EHRFORGE_DUCKDB and EHRFORGE_RUNS point at it / its runs."""
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(demo_chain.warehouse, path)
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(path))
    monkeypatch.setenv("EHRFORGE_RUNS", str(demo_chain.runs))
    return path
