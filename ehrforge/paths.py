"""Where things live. Every path can be overridden by an environment variable; nothing is machine-specific."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


def warehouse_path() -> Path:
    """The DuckDB warehouse file: `$EHRFORGE_DUCKDB`, else `warehouse/ehrforge.duckdb` in the repo."""
    return Path(os.environ.get("EHRFORGE_DUCKDB", REPO_ROOT / "warehouse" / "ehrforge.duckdb")).resolve()


def runs_dir() -> Path:
    """Where models, adapters and checkpoints go: `$EHRFORGE_RUNS`, else `runs/` in the repo."""
    return Path(os.environ.get("EHRFORGE_RUNS", REPO_ROOT / "runs")).resolve()


def data_dir() -> Path:
    """Downloaded and derived input data (demo download, demo notes): `$EHRFORGE_DATA`, else `data/`."""
    return Path(os.environ.get("EHRFORGE_DATA", REPO_ROOT / "data")).resolve()
