"""The pieces every suite is made of: frames (small DuckDB query results) and the GX expectations run on them.

Route (see the README, section "Data quality"): Great Expectations 1.x cannot validate DuckDB through SQLAlchemy
today (duckdb-engine: GX issues #10738, #11579), and loading a mart of hundreds of millions of rows into
pandas does not scale. So DuckDB does the heavy lifting and GX validates what it hands back, which is small:

* aggregate frames: exact table-level figures computed in one pushed-down query (row counts next to the
  source's, null rates, duplicate keys, counts per event type / split / task), one row per key;
* sample frames: seeded, deterministic samples of rows for distribution checks (the `n` rows with the
  smallest `hash(key, seed)`: a top-n, so one streaming scan with bounded memory and the same rows on every
  machine and thread count), stratified per itemid for the physiological ranges;
* schema frames: the mart's columns and types from information_schema.

Free text never reaches GX (or Data Docs, or the results table): frames carry text lengths, not text.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import duckdb
import pandas as pd
import great_expectations.expectations as gxe
from great_expectations.expectations.row_conditions import Column

SEVERITIES = ("critical", "warn")


def check(expectation: gxe.Expectation, name: str, severity: str, why: str) -> gxe.Expectation:
    """Tag an expectation with a stable name, a severity and the reason it exists (shown in Data Docs)."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, not {severity!r}")
    # GX 1.x's own severity (critical/warning) drives its Data Docs; meta carries ours plus name and reason.
    expectation.severity = "critical" if severity == "critical" else "warning"
    expectation.meta = {"name": name, "severity": severity, "why": why}
    expectation.notes = f"**{severity}** `{name}`: {why}"  # rendered next to the expectation in Data Docs
    return expectation


def critical(expectation: gxe.Expectation, name: str, why: str) -> gxe.Expectation:
    return check(expectation, name, "critical", why)


def warn(expectation: gxe.Expectation, name: str, why: str) -> gxe.Expectation:
    return check(expectation, name, "warn", why)


def where(column: str, value: Any) -> dict:
    """Row-condition kwargs selecting the rows of a keyed frame where `column == value` (a GX Condition
    object: string conditions with condition_parser are deprecated since GX 1.9)."""
    return {"row_condition": Column(column) == value}


def metric_between(column: str, name: str, severity: str, why: str, min_value=None, max_value=None,
                   key: Any = None) -> gxe.Expectation:
    """A bound on a single figure of an aggregate frame: the frame's one row (or the row whose row_key is
    `key`). GX's column-max expectation over one row reports the figure itself as the observed value."""
    cond = where("row_key", key) if key is not None else {}
    return check(
        gxe.ExpectColumnMaxToBeBetween(column=column, min_value=min_value, max_value=max_value, **cond),
        name, severity, why,
    )


@dataclasses.dataclass
class Frame:
    """One small table handed to GX, with the expectations validated on it.

    `query` is DuckDB SQL, or a function (con, settings) -> DataFrame for frames that need several queries
    (e.g. duplicate counts per hash partition). Every frame has a `row_key` column: GX reports the row_key
    of unexpected rows, so a failure names the event, admission, itemid or split it is about.
    """

    suite: str
    name: str
    source: str
    kind: str  # aggregate | sample | schema
    description: str
    query: str | Callable[[duckdb.DuckDBPyConnection, Any], pd.DataFrame]
    expectations: list[gxe.Expectation]

    @property
    def gx_name(self) -> str:
        return f"{self.suite}.{self.name}"

    def compute(self, con: duckdb.DuckDBPyConnection, settings: Any) -> pd.DataFrame:
        df = self.query(con, settings) if callable(self.query) else con.execute(self.query).df()
        if "row_key" not in df.columns:
            raise ValueError(f"frame {self.gx_name} has no row_key column")
        df["row_key"] = df["row_key"].astype(str)
        return df


@dataclasses.dataclass
class SuiteSpec:
    """A suite: every check on one mart (or on the instruction tables), as a list of frames."""

    name: str
    tables: list[str]
    build: Callable[[Any], list[Frame]]
    optional: bool = False  # skipped (reported 'not_present') when its tables do not exist
    description: str = ""


# --- schema ------------------------------------------------------------------------------------------------

def schema_frame(suite: str, contract: dict[str, dict[str, str]],
                 advisory: dict[str, dict[str, str]] | None = None) -> Frame:
    """Columns and types of the suite's tables; fails, naming them, when a contracted column is gone or
    changed type (downstream jobs select these columns by name). `advisory` columns only warn."""
    tables = ", ".join(f"'{t}'" for t in contract)
    sql = f"""
        select table_schema || '.' || table_name as relation,
               table_schema || '.' || table_name || '.' || column_name as row_key,
               column_name || ' ' || data_type as column_typed
        from information_schema.columns
        where table_schema || '.' || table_name in ({tables})
        order by relation, ordinal_position
    """
    exps = []
    for table, cols in contract.items():
        wanted = sorted(f"{c} {t}" for c, t in cols.items())
        exps.append(critical(
            gxe.ExpectColumnDistinctValuesToContainSet(column="column_typed", value_set=wanted,
                                                       **where("relation", table)),
            f"schema.{table}",
            f"{table} must keep the columns (name and type) that downstream jobs read",
        ))
    for table, cols in (advisory or {}).items():
        exps.append(warn(
            gxe.ExpectColumnDistinctValuesToContainSet(column="column_typed",
                                                       value_set=sorted(f"{c} {t}" for c, t in cols.items()),
                                                       **where("relation", table)),
            f"schema_advisory.{table}", f"{table} should also have these columns with these types"))
    return Frame(suite, "schema", ", ".join(contract), "schema", "contracted columns and types", sql, exps)


# --- small helpers used by the suites' SQL -----------------------------------------------------------------

def seeded_sample(table: str, key: str, columns: dict[str, str], n: int, seed: int, where: str = "") -> str:
    """SQL for the `n` rows of `table` with the smallest hash(key, seed): a uniform random sample that is the
    same on every machine and thread count. Written as a top-n aggregate (min_by(..., n)): one streaming
    scan holding n rows. (`order by hash(...) limit n` is planned as a full sort by DuckDB 2.0 here:
    3.3 GB peak on 16M events, against 0.5 GB for this form.)"""
    struct = ", ".join(f"'{name}': {expr}" for name, expr in columns.items())
    cond = f"where {where}" if where else ""
    return (f"select unnest(min_by({{{struct}}}, hash({key}, {seed}), {n}), recursive := true) "
            f"from {table} {cond}")



def hours_outside(time: str, start: str, end: str) -> str:
    """SQL: how many hours `time` lies outside [start, end] (0 inside; NULL when any side is NULL)."""
    return f"greatest(date_diff('second', {time}, {start}), date_diff('second', {end}, {time}), 0) / 3600.0"


def null_rates(columns: list[str]) -> str:
    """SQL select-list items `null_rate__<col>` for an aggregate over one table."""
    return ",\n".join(f"1.0 * count(*) filter (where {c} is null) / greatest(count(*), 1) as null_rate__{c}"
                      for c in columns)
