"""Warehouse I/O: one DuckDB file shared by dbt and every Python job.

    from ehrforge import warehouse
    with warehouse.connect() as con:                       # clear error if the file is locked or missing
        warehouse.require_tables(con, ["marts.dim_admissions"])
        df = con.execute("select * from marts.dim_admissions").df()
        run = warehouse.start_run(con, job="synthesis", config=cfg)   # deterministic run_id per config
        warehouse.write_table(con, "synthesis.instructions", df, run)  # idempotent per run

Rules every Python-written table follows: it carries `run_id`, `created_at`, `code_version` and
`config_hash`; re-writing the same run replaces that run's rows instead of appending duplicates; the write
is one transaction, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd
from pydantic import BaseModel

from ehrforge import tables
from ehrforge.config import config_hash as _config_hash
from ehrforge.config import config_json
from ehrforge.errors import WarehouseError
from ehrforge.paths import REPO_ROOT, warehouse_path

log = logging.getLogger(__name__)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def lock_message(path: str | Path, exc: Exception | str) -> str:
    """The one message every job (and a dbt build started from Python) prints when the warehouse is locked."""
    holder = ""
    m = re.search(r"PID (\d+)", str(exc))
    if m:
        holder = f" (held by process {m.group(1)})"
    return (
        f"the warehouse {path} is locked by another process{holder}. DuckDB allows one writer at a time: "
        "wait for the running job to finish, or close the other connection (a DuckDB CLI, a notebook, "
        "`dbt build`), then retry. Set EHRFORGE_DUCKDB to use another file."
    )


def connect(
    path: str | Path | None = None,
    read_only: bool = False,
    must_exist: bool = False,
    wait_s: float = 0.0,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse. Retries for `wait_s` seconds if another process holds the lock."""
    path = Path(path) if path else warehouse_path()
    if (must_exist or read_only) and not path.exists():
        raise WarehouseError(
            f"the warehouse {path} does not exist: build it first with `make build` "
            "(or `dbt build` in dbt_project/), or point EHRFORGE_DUCKDB at an existing file"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise WarehouseError(f"cannot open the warehouse {path}: {exc}") from exc
            if time.monotonic() >= deadline:
                raise WarehouseError(lock_message(path, exc)) from exc
            time.sleep(0.2)


@contextlib.contextmanager
def session(path: str | Path | None = None, **kw) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(path, **kw)
    try:
        yield con
    finally:
        con.close()


def fetch_one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> tuple | None:
    """First row of a query, with the result fully consumed. DuckDB 2.0 keeps a result open after `fetchone()`
    and refuses other work on the connection (`register`, a new transaction) until it is drained."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def fetch_scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    row = fetch_one(con, sql, params)
    return row[0] if row else None


def split_name(table: str) -> tuple[str, str]:
    if "." not in table:
        raise WarehouseError(f"table name {table!r} must be schema-qualified, e.g. synthesis.instructions")
    schema, name = table.split(".", 1)
    for part in (schema, name):
        if not _IDENT.match(part):
            raise WarehouseError(f"invalid table name {table!r}")
    return schema, name


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = split_name(table)
    return bool(fetch_scalar(
        con, "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, name]
    ))


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    schema, name = split_name(table)
    rows = con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
        "order by ordinal_position",
        [schema, name],
    ).fetchall()
    return [r[0] for r in rows]


def require_tables(con: duckdb.DuckDBPyConnection, tables: list[str], hint: str | None = None) -> None:
    """Fail with a clear message if any table is missing, or if the last dbt build did not finish successfully."""
    missing = [t for t in tables if not table_exists(con, t)]
    if missing:
        fix = hint or "build the warehouse first: `make build` (runs `dbt build` in dbt_project/)"
        raise WarehouseError(f"missing warehouse table(s): {', '.join(missing)}. Fix: {fix}")
    if any(t.split(".")[0] in ("marts", "staging", "intermediate") for t in tables):
        require_finished_build(con)


def require_finished_build(con: duckdb.DuckDBPyConnection) -> None:
    """The one check every job runs before it reads anything derived from the marts: the most recent `dbt build`
    that changed staging, intermediate or mart tables finished, and without errors.

    Each build opens its row in meta.dbt_builds (status `running`) in its first on-run-start hook and closes it
    at the end (`succeeded` / `failed`); a build killed midway, or stopped in a hook, leaves `running`. Builds
    that change only the results marts (evaluation's results step) do not count. A warehouse no dbt build ever
    wrote (e.g. a synthetic test warehouse) has no meta.dbt_builds and passes."""
    if not table_exists(con, "meta.dbt_builds"):
        return
    cols = set(table_columns(con, "meta.dbt_builds"))
    if "status" in cols:
        row = fetch_one(
            con, "select invocation_id, coalesce(status, case when n_errors > 0 then 'failed' else 'succeeded' end), "
            "n_errors, failed_nodes, coalesce(started_at, finished_at) from meta.dbt_builds "
            "where coalesce(touches_marts, true) order by coalesce(started_at, finished_at) desc limit 1")
    else:  # a warehouse built before build markers existed
        row = fetch_one(con, "select invocation_id, case when n_errors > 0 then 'failed' else 'succeeded' end, "
                        "n_errors, failed_nodes, finished_at from meta.dbt_builds order by finished_at desc limit 1")
    if not row:
        return
    invocation, status, n_errors, failed_nodes, started = row
    if status == "running":
        raise WarehouseError(
            f"the last dbt build ({invocation}, started {started}) did not finish: it was killed, stopped in a hook, "
            "or is still running. Its marts may mix old and new tables. Rerun `make build` (or `dbt build`) to "
            "completion before running Python jobs.")
    if status != "succeeded" or n_errors:
        raise WarehouseError(
            f"the last dbt build ({invocation}) failed ({n_errors or 0} error(s): {failed_nodes}); the marts may be "
            "stale or partial. Fix the error and rerun `make build` before running Python jobs.")


check_last_build = require_finished_build  # the name older callers use


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return (sha or "unknown") + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass(frozen=True)
class RunInfo:
    """Metadata stamped on every row a job writes."""

    run_id: str
    job: str
    config_hash: str
    code_version: str
    created_at: dt.datetime

    def columns(self) -> dict:
        return {
            "run_id": self.run_id,
            "created_at": self.created_at,
            "code_version": self.code_version,
            "config_hash": self.config_hash,
        }


def start_run(
    con: duckdb.DuckDBPyConnection,
    job: str,
    config: BaseModel | dict,
    run_id: str | None = None,
) -> RunInfo:
    """Register a run in `meta.runs`. The default run_id is `<job>-<config hash[:12]>`: the same config gives
    the same run, so re-running replaces its rows instead of duplicating them."""
    chash = _config_hash(config)
    run = RunInfo(
        run_id=run_id or f"{job}-{chash[:12]}",
        job=job,
        config_hash=chash,
        code_version=code_version(),
        created_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
    )
    con.execute("create schema if not exists meta")
    con.execute(
        "create table if not exists meta.runs (run_id varchar primary key, job varchar, config_hash varchar, "
        "code_version varchar, config_json varchar, created_at timestamp, status varchar, finished_at timestamp, "
        "error varchar)"
    )
    con.execute("alter table meta.runs add column if not exists error varchar")  # warehouses from before it
    con.execute(
        "insert or replace into meta.runs (run_id, job, config_hash, code_version, config_json, created_at, status, "
        "finished_at, error) values (?, ?, ?, ?, ?, ?, 'running', null, null)",
        [run.run_id, job, chash, run.code_version, config_json(config), run.created_at],
    )
    return run


def finish_run(con: duckdb.DuckDBPyConnection, run: RunInfo | str, status: str = "succeeded",
               error: str | None = None) -> None:
    """Close a run in meta.runs: `succeeded`, `incomplete` or `failed` (with the reason in `error`)."""
    run_id = run if isinstance(run, str) else run.run_id
    con.execute("alter table meta.runs add column if not exists error varchar")
    con.execute(
        "update meta.runs set status = ?, finished_at = ?, error = ? where run_id = ?",
        [status, dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), error, run_id],
    )


def failure_reason(exc: BaseException) -> str:
    text = str(exc).strip() or "(no message)"
    return f"{type(exc).__name__}: {text}"[:4000]


def mark_failed(con: duckdb.DuckDBPyConnection, run: RunInfo | str, exc: BaseException) -> None:
    """Best effort: record `exc` as the reason the run failed, never hiding the original error."""
    for attempt in range(2):
        try:
            finish_run(con, run, status="failed", error=failure_reason(exc))
            return
        except duckdb.Error as err:  # e.g. a transaction the failure left open
            if attempt == 0:
                with contextlib.suppress(duckdb.Error):
                    con.execute("rollback")
            else:
                log.warning("could not mark run %s failed: %s", run if isinstance(run, str) else run.run_id, err)


@contextlib.contextmanager
def failing_run(con: duckdb.DuckDBPyConnection, run: RunInfo) -> Iterator[RunInfo]:
    """Mark `run` failed, with the reason, on any error or refusal raised inside the block (then re-raise)."""
    try:
        yield run
    except BaseException as exc:
        mark_failed(con, run, exc)
        raise


def write_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    df: pd.DataFrame,
    run: RunInfo | None = None,
    replace: str = "run",
    key: list[str] | None = None,
) -> int:
    """Write `df` into `table` in one transaction, creating the table if needed.

    A table declared in the dbt source YAML (ehrforge.tables: every Python-written table) is created from its
    declaration, and `df` must have exactly its columns (the run columns are added here); any other table is
    created from `df`'s columns.

    replace="run": rows of the same run_id are replaced (idempotent re-runs).
    replace="key": rows whose `key` columns match an incoming row are replaced (upsert).
    replace="all": the table is replaced whole.
    replace="none": append.
    """
    schema, name = split_name(table)
    df = df.copy()
    for col in df.columns:
        # an all-NULL object column would become DuckDB's NULL type, and a later non-NULL write would fail
        if df[col].dtype == object and df[col].isna().all():
            df[col] = df[col].astype("string")
    if run is not None:
        for col, value in run.columns().items():
            df[col] = value
    if replace == "run" and run is None:
        raise WarehouseError("write_table(replace='run') needs a RunInfo")
    if replace == "key" and not key:
        raise WarehouseError("write_table(replace='key') needs key columns")
    view = f"_incoming_{name}"
    con.register(view, df)
    try:
        con.execute("begin transaction")
        con.execute(f'create schema if not exists "{schema}"')
        declared = tables.is_declared(f"{schema}.{name}")
        if declared:
            tables.ensure(con, f"{schema}.{name}")
        if replace == "all" and not declared:
            con.execute(f'create or replace table "{schema}"."{name}" as select * from "{view}"')
        else:
            con.execute(f'create table if not exists "{schema}"."{name}" as select * from "{view}" limit 0')
            existing = table_columns(con, table)
            if set(existing) != set(df.columns):
                missing = sorted(set(df.columns) - set(existing))
                extra = sorted(set(existing) - set(df.columns))
                fix = (f"declare the new ones in {tables.declared()[f'{schema}.{name}'].file.name} and drop the "
                       f"table (`drop table {table}`; it is created again from the declaration)" if declared else
                       f"the table was made by an older version: drop it (`drop table {table}`) or write to a new "
                       "table")
                raise WarehouseError(
                    f"{table} has different columns than the rows being written (new: {missing}, "
                    f"absent: {extra}); {fix}."
                )
            if replace == "all":
                con.execute(f'delete from "{schema}"."{name}"')
            elif replace == "run":
                con.execute(f'delete from "{schema}"."{name}" where run_id = ?', [run.run_id])
            elif replace == "key":
                cond = " and ".join(f't."{k}" is not distinct from i."{k}"' for k in key)
                con.execute(
                    f'delete from "{schema}"."{name}" t where exists (select 1 from "{view}" i where {cond})'
                )
            cols = ", ".join(f'"{c}"' for c in existing)
            con.execute(f'insert into "{schema}"."{name}" ({cols}) select {cols} from "{view}"')
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        con.unregister(view)
    return len(df)
