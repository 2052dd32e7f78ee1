"""The evaluation tables, declared once in dbt_project/models/results/_evaluation__sources.yml (columns + types).

`ensure_tables(con)` creates any that are missing exactly as the dbt hook `create_declared_sources()` does, so
Python and dbt always agree on columns and types (an all-null column in a first DataFrame cannot pick a wrong type).
`frame(table, rows)` gives a DataFrame with the declared columns in order (run columns are added by write_table).
"""

from __future__ import annotations

import functools

import pandas as pd

from ehrforge.paths import DBT_PROJECT_DIR
from ehrforge.warehouse import RUN_COLUMNS

SOURCES_YML = DBT_PROJECT_DIR / "models" / "results" / "_evaluation__sources.yml"
EVAL_RUNS, PREDICTIONS, SCORES, TASK_METRICS, COMPARISONS = (
    "evaluation.eval_runs", "evaluation.predictions", "evaluation.scores", "evaluation.task_metrics",
    "evaluation.comparisons")
CALIBRATION_BINS, SUBGROUP_METRICS, SAMPLES = (
    "evaluation.calibration_bins", "evaluation.subgroup_metrics", "evaluation.samples")


@functools.lru_cache(maxsize=1)
def declared() -> dict[str, list[tuple[str, str]]]:
    import yaml

    out = {}
    for src in yaml.safe_load(SOURCES_YML.read_text())["sources"]:
        for t in src["tables"]:
            out[f"{src['schema']}.{t['name']}"] = [(c["name"], c["data_type"]) for c in t["columns"]]
    return out


def ensure_tables(con) -> None:
    for table, cols in declared().items():
        schema, name = table.split(".")
        con.execute(f'create schema if not exists "{schema}"')
        con.execute(f'create table if not exists "{schema}"."{name}" ('
                    + ", ".join(f'"{c}" {t}' for c, t in cols) + ")")


def frame(table: str, rows: list[dict]) -> pd.DataFrame:
    cols = [c for c, _ in declared()[table] if c not in RUN_COLUMNS]
    df = pd.DataFrame(rows, columns=cols)
    extra = {k for r in rows for k in r} - set(cols)
    if extra:
        raise ValueError(f"{table}: undeclared column(s) {sorted(extra)}; declare them in {SOURCES_YML.name}")
    return df.astype(object).where(df.notna(), None)
