"""Build the warehouse: `dbt build` in-process, then a short summary of what was built.

    python -m ehrforge.build                     # = make build
    python -m ehrforge.build --select marts      # any extra arguments go to `dbt build`

Before dbt runs, the input files are checked cheaply (present, readable header, at least one row) so a wrong
MIMIC_ROOT or a corrupt download fails in a second with the file's name, not minutes into the build.
Exit status: 0 built; 1 the build ran and a model or test failed; 2 bad input (raw files, MIMIC_ROOT) or a
missing/locked warehouse. Each build opens a marker in meta.dbt_builds and closes it at the end, so an
interrupted or failed build is refused by every job (docs/crash-safety.md).
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import sys
import time
from pathlib import Path

from ehrforge.errors import EhrforgeError, InputDataError, RunFailedError, WarehouseError, exit_code
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


RAW_FILE_EXTENSIONS = (".parquet", ".csv.gz", ".csv")  # first found wins; the dbt hook register_mimic_sources agrees


def source_tables() -> list[tuple[str, str, list[str], bool]]:
    """(module, table, columns, optional) for every raw source declared in the dbt project."""
    import yaml

    out = []
    for path in sorted((DBT_PROJECT_DIR / "models" / "staging").glob("*/_*__sources.yml")):
        for src in yaml.safe_load(path.read_text())["sources"]:
            module = (src.get("meta") or {}).get("mimic_module")
            if not module:  # not a MIMIC-IV file (e.g. the public case reports, register_case_report_source)
                continue
            for t in src["tables"]:
                cols = [c["name"] for c in t.get("columns", [])]
                out.append((module, t["name"], cols, bool(t.get("meta", {}).get("optional"))))
    return out


def raw_file(folder: Path, table: str) -> Path | None:
    """The raw file of one source table in its module folder (parquet, then .csv.gz, then .csv), or None: the one
    discovery rule in Python, the same as the dbt on-run-start hook `register_mimic_sources()` applies in SQL."""
    return next((p for p in (folder / f"{table}{ext}" for ext in RAW_FILE_EXTENSIONS) if p.exists()), None)


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
    for module, table, cols, optional in source_tables():
        folder = Path(note_root) if module == "note" and note_root else root / module
        path = raw_file(folder, table)
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
                first_row = fh.readline()
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
        if not first_row.strip():
            raise InputDataError(
                f"{path} (MIMIC-IV table {module}/{table}) has a header but no rows: the download or conversion was "
                "cut short. Download it again and check it against SHA256SUMS.txt"
                + (", or remove the file (the table is optional)." if optional else ".")
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


def _dbt_errors(res) -> str:
    """Every error message of a dbt invocation: its exception and the failed nodes' messages."""
    texts = [str(res.exception)] if res.exception is not None else []
    for r in getattr(res.result, "results", None) or []:
        if getattr(r, "status", None) in ("error", "runtime error") and getattr(r, "message", None):
            texts.append(str(r.message))
    return "\n".join(texts)


_GZIP = re.compile(r"(?i)gzip|zlib|unexpected end of (file|stream)")
_FILE = re.compile(r"[\w./~-]+\.(?:csv\.gz|csv|parquet)")


def _translate(errors: str) -> EhrforgeError | None:
    """A dbt failure that is really bad input or a locked warehouse, as the error every job raises for it."""
    if "Could not set lock" in errors or "Conflicting lock" in errors:
        return WarehouseError(warehouse_lock_message(errors))
    if _GZIP.search(errors):
        files = _FILE.findall(errors)
        named = files[0] if files else "a raw MIMIC-IV file (see the dbt message below)"
        detail = next((ln.strip() for ln in errors.splitlines() if _GZIP.search(ln)), "")
        return InputDataError(
            f"{named} is corrupt or truncated (an interrupted download?): {detail[:300]}. "
            "Fix: download the file again and check it against SHA256SUMS.txt (`sha256sum -c SHA256SUMS.txt` in "
            "the MIMIC-IV folder), then rerun the build.")
    return None


def warehouse_lock_message(errors: str) -> str:
    from ehrforge.warehouse import lock_message

    return lock_message(warehouse_path(), errors)


def _close_open_markers(reason: str) -> None:
    """A build that stopped before on-run-end (a hook error) leaves its marker 'running': close it as failed."""
    import duckdb

    from ehrforge import warehouse

    path = warehouse_path()
    if not path.exists():
        return
    try:
        with warehouse.session(path) as con:
            if warehouse.table_exists(con, "meta.dbt_builds") and "status" in warehouse.table_columns(
                    con, "meta.dbt_builds"):
                con.execute("update meta.dbt_builds set status = 'failed', finished_at = now()::timestamp, "
                            "n_errors = coalesce(n_errors, 1), failed_nodes = coalesce(failed_nodes, ?) "
                            "where status = 'running'", [reason[:500]])
    except (EhrforgeError, duckdb.Error) as exc:  # the marker stays 'running', which jobs refuse as well
        log.warning("could not close the build marker: %s", exc)


def run_dbt(args: list[str]) -> bool:
    """`dbt <args>` in-process on the warehouse at `ehrforge.paths.warehouse_path()` (whatever the working folder).
    Returns dbt's success; raises WarehouseError (locked), InputDataError (a corrupt raw file) or EhrforgeError."""
    from dbt.cli.main import dbtRunner

    from ehrforge import warehouse

    path = warehouse_path()
    warehouse.connect(path).close()  # a locked warehouse fails here with the one lock message, not inside dbt
    saved = os.environ.get("EHRFORGE_DUCKDB")
    os.environ["EHRFORGE_DUCKDB"] = str(path)  # the profile then opens the file Python uses
    try:
        res = dbtRunner().invoke(
            args + ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
        )
    finally:
        release_dbt_connection()
        if saved is None:
            os.environ.pop("EHRFORGE_DUCKDB", None)
        else:
            os.environ["EHRFORGE_DUCKDB"] = saved
    if res.success:
        return True
    errors = _dbt_errors(res)
    if args and args[0] in ("build", "run", "seed"):
        _close_open_markers(errors.strip().splitlines()[0][:300] if errors.strip() else "dbt stopped")
    translated = _translate(errors)
    if translated is not None:
        raise translated
    if res.exception is not None:
        msg = str(res.exception)
        if "MIMIC" in msg and ("missing" in msg or "lacks" in msg or "no rows" in msg or "not set" in msg):
            raise InputDataError(msg)
        raise RunFailedError(f"dbt failed: {res.exception}")
    return False


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
            if "is_dischtime_before_admittime" in warehouse.table_columns(con, "marts.dim_admissions"):
                n_bad = warehouse.fetch_scalar(
                    con, "select count(*) from marts.dim_admissions where is_dischtime_before_admittime")
                if n_bad:
                    lines.append(f"warning: {n_bad} admission(s) end before they start (dischtime < admittime): "
                                 "kept, flagged is_dischtime_before_admittime, and given no time-based label")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    try:
        preflight(os.environ.get("MIMIC_ROOT"), os.environ.get("MIMIC_NOTE_ROOT"))
        ok = run_dbt(["build"] + argv)
        if not ok:
            print("error: dbt build failed (see the messages above); the marts from this build are not to be used, "
                  "and Python jobs will refuse them until a build succeeds.", file=sys.stderr)
            sys.exit(1)
        print(summary())
        print(f"built in {time.perf_counter() - start:.1f} s")
    except EhrforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exit_code(exc))


if __name__ == "__main__":
    main()
