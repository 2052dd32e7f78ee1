"""Tables Python writes, declared once: in the dbt source YAML, with `meta: {create_if_missing: true}`.

Every Python-written table (llm.calls, synthesis.*, training.*, evaluation.*, dq.*) is a dbt source whose columns,
data types and (optional) primary key are declared in one `_<source>__sources.yml` under dbt_project/models. Two
readers create them, empty, from that one declaration:

* dbt's on-run-start hook `create_declared_sources()`, so a fresh warehouse builds and the source tests run (on
  empty tables) before any Python job ran;
* `ensure(con, table)` here, called by `ehrforge.warehouse.write_table` before every write, so Python and dbt
  always agree on columns and types (an all-null column in a first DataFrame cannot pick a wrong type, and a
  column a writer adds without declaring it is refused with the file to declare it in).

    from ehrforge import tables
    tables.columns("training.runs")                 # declared column names, in order
    df = tables.frame("evaluation.scores", rows)    # DataFrame with the declared columns (run columns added later)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ehrforge.errors import WarehouseError
from ehrforge.paths import DBT_PROJECT_DIR

SOURCE_FILES_GLOB = "models/**/_*__sources.yml"
RUN_COLUMNS = ("run_id", "created_at", "code_version", "config_hash")


@dataclass(frozen=True)
class Declared:
    table: str                          # schema.name
    columns: tuple[tuple[str, str], ...]  # (name, data_type)
    primary_key: tuple[str, ...]
    file: Path

    def ddl(self) -> str:
        schema, name = self.table.split(".")
        cols = [f'"{c}" {t}' for c, t in self.columns]
        if self.primary_key:
            cols.append("primary key (" + ", ".join(f'"{c}"' for c in self.primary_key) + ")")
        return f'create table if not exists "{schema}"."{name}" (' + ", ".join(cols) + ")"


@functools.lru_cache(maxsize=1)
def declared() -> dict[str, Declared]:
    """Every source table with `meta.create_if_missing: true`, by `schema.table`."""
    import yaml

    out: dict[str, Declared] = {}
    for path in sorted(DBT_PROJECT_DIR.glob(SOURCE_FILES_GLOB)):
        for src in (yaml.safe_load(path.read_text()) or {}).get("sources", []):
            for t in src.get("tables", []):
                meta = t.get("meta") or {}
                if not meta.get("create_if_missing"):
                    continue
                table = f"{src.get('schema', src['name'])}.{t.get('identifier', t['name'])}"
                cols = []
                for c in t.get("columns", []):
                    if not c.get("data_type"):
                        raise WarehouseError(f"{path.relative_to(DBT_PROJECT_DIR.parent)}: {table}.{c['name']} has "
                                             "no data_type; a table with meta.create_if_missing needs one per column")
                    cols.append((c["name"], c["data_type"]))
                out[table] = Declared(table, tuple(cols), tuple(meta.get("primary_key") or ()), path)
    return out


def is_declared(table: str) -> bool:
    return table in declared()


def _get(table: str) -> Declared:
    try:
        return declared()[table]
    except KeyError:
        raise WarehouseError(f"{table} is not declared: add it, with its columns and data types and "
                             "`meta: {create_if_missing: true}`, to a _<source>__sources.yml under "
                             "dbt_project/models") from None


def columns(table: str, with_run_columns: bool = True) -> list[str]:
    return [c for c, _ in _get(table).columns if with_run_columns or c not in RUN_COLUMNS]


def ensure(con, table: str | None = None) -> None:
    """Create the declared table (or all of them), empty, where it does not exist yet; existing ones are untouched."""
    for d in ([_get(table)] if table else declared().values()):
        con.execute(f'create schema if not exists "{d.table.split(".")[0]}"')
        con.execute(d.ddl())


def frame(table: str, rows: list[dict]) -> pd.DataFrame:
    """The rows as a DataFrame with the table's declared columns, in order, run columns left to write_table."""
    cols = columns(table, with_run_columns=False)
    extra = {k for r in rows for k in r} - set(cols)
    if extra:
        raise WarehouseError(f"{table}: undeclared column(s) {sorted(extra)}; declare them in "
                             f"{_get(table).file.relative_to(DBT_PROJECT_DIR.parent)}")
    df = pd.DataFrame(rows, columns=cols)
    return df.astype(object).where(df.notna(), None)
