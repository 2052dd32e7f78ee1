"""Build the warehouse: `dbt build` in-process, then a short summary of what was built.

    python -m ehrforge.build                     # = make build
    python -m ehrforge.build --select marts      # any extra arguments go to `dbt build`

Before dbt runs, the input files are checked cheaply (present, readable header) so a wrong MIMIC_ROOT or
a corrupt download fails in a second with the file's name, not minutes into the build.
"""

from __future__ import annotations

import gzip
import logging
import os
import sys
import time
from pathlib import Path

from ehrforge.errors import EhrforgeError, InputDataError
from ehrforge.paths import DBT_PROJECT_DIR, warehouse_path

log = logging.getLogger(__name__)



def mart_tables() -> list[str]:
    """Every mart the dbt project declares ('marts.<name>'), read from the manifest of the last dbt invocation,
    so a new mart needs no Python list. Empty when dbt has not run yet."""
    import json

    manifest = Path(os.environ.get("DBT_TARGET_PATH") or DBT_PROJECT_DIR / "target") / "manifest.json"
    if not manifest.is_absolute():
        manifest = DBT_PROJECT_DIR / manifest
    if not manifest.exists():
        return []
    nodes = json.loads(manifest.read_text())["nodes"].values()
    return sorted(f"marts.{n['alias'] or n['name']}" for n in nodes
                  if n["resource_type"] == "model" and n["fqn"][1:2] == ["marts"])


def _source_tables() -> list[tuple[str, str, list[str], bool]]:
    """(module, table, columns, optional) for every raw source declared in the dbt project."""
    import yaml

    out = []
    for path in sorted((DBT_PROJECT_DIR / "models" / "staging").glob("*/_*__sources.yml")):
        for src in yaml.safe_load(path.read_text())["sources"]:
            module = src["meta"]["mimic_module"]
            for t in src["tables"]:
                cols = [c["name"] for c in t.get("columns", [])]
                out.append((module, t["name"], cols, bool(t.get("meta", {}).get("optional"))))
    return out


def preflight(mimic_root: str | None, note_root: str | None) -> None:
    """Fail fast, naming the file and the fix, on a missing root, missing table, bad gzip or renamed column."""
    if not mimic_root:
        raise InputDataError(
            "MIMIC_ROOT is not set. Point it at the raw MIMIC-IV folder holding hosp/ and icu/ "
            "(e.g. export MIMIC_ROOT=/data/mimic-iv-2.2), or run `make demo-data` for the open demo."
        )
    root = Path(mimic_root)
    if not (root / "hosp").is_dir():
        raise InputDataError(f"MIMIC_ROOT={root} has no hosp/ folder; it must be the folder that holds hosp/ and icu/")
    for module, table, cols, optional in _source_tables():
        folder = Path(note_root) if module == "note" and note_root else root / module
        candidates = [folder / f"{table}{ext}" for ext in (".parquet", ".csv.gz", ".csv")]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            if optional:
                continue
            raise InputDataError(
                f"missing MIMIC-IV table {module}/{table}: expected {folder / (table + '.csv.gz')} (or .csv / .parquet). "
                f"Check that MIMIC_ROOT ({root}) is right and the download finished."
            )
        if path.suffix == ".parquet":
            continue
        try:
            opener = gzip.open if path.name.endswith(".gz") else open
            with opener(path, "rt", newline="") as fh:
                header = fh.readline()
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise InputDataError(
                f"cannot read {path}: {exc}. The file is corrupt (an interrupted download?): "
                "download it again and check it against SHA256SUMS.txt."
            ) from exc
        present = {h.strip().strip('"').lower() for h in header.split(",")}
        missing = [c for c in cols if c.lower() not in present]
        if missing:
            raise InputDataError(
                f"{path} lacks column(s) {', '.join(missing)} (header: {header.strip()[:200]}). The file is from "
                "another release or was edited; restore the PhysioNet original or rename the column(s) back."
            )


def release_dbt_connection() -> None:
    """dbt-duckdb keeps its DuckDB instance open in-process; close it so this process can open the file again."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:
        return
    with DuckDBConnectionManager._LOCK:
        if DuckDBConnectionManager._ENV is not None:
            DuckDBConnectionManager._ENV.close()
            DuckDBConnectionManager._ENV = None


def run_dbt(args: list[str]) -> bool:
    from dbt.cli.main import dbtRunner

    try:
        res = dbtRunner().invoke(
            args + ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
        )
    finally:
        release_dbt_connection()
    if res.exception is not None:
        raise EhrforgeError(f"dbt failed: {res.exception}")
    return bool(res.success)


def summary() -> str:
    from ehrforge import warehouse

    lines = [f"warehouse: {warehouse_path()}", f"{'table':32} {'rows':>12}"]
    with warehouse.session(read_only=True) as con:
        for t in mart_tables():
            n = warehouse.fetch_scalar(con, f"select count(*) from {t}") if warehouse.table_exists(con, t) else None
            lines.append(f"{t:32} {n if n is not None else 'missing':>12}")
        if warehouse.table_exists(con, "marts.fct_notes") and not warehouse.fetch_scalar(
            con, "select count(*) from marts.fct_notes"
        ):
            lines.append("note: marts.fct_notes is empty (no note/ folder under MIMIC_NOTE_ROOT or MIMIC_ROOT)")
        if warehouse.table_exists(con, "marts.dim_admissions"):
            n_llemr, n_adm = warehouse.fetch_one(
                con, "select count(*) filter (where is_llemr_cohort), count(*) from marts.dim_admissions"
            )
            lines.append(f"cohorts: all admissions {n_adm}, LLemr {n_llemr}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    try:
        preflight(os.environ.get("MIMIC_ROOT"), os.environ.get("MIMIC_NOTE_ROOT"))
        from ehrforge import warehouse

        warehouse.connect().close()  # a locked warehouse fails here with the fix, not deep inside dbt
        ok = run_dbt(["build"] + argv)
        if not ok:
            sys.exit("error: dbt build failed (see the messages above); the marts from this build are not to be "
                     "used, and Python jobs will refuse them until a build succeeds.")
        print(summary())
        print(f"built in {time.perf_counter() - start:.1f} s")
    except EhrforgeError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
