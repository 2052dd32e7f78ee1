"""Run the Great Expectations suites over the marts; results into dq.expectation_results, Data Docs to HTML.

    python -m expectations.run                          # = make expectations: every suite
    python -m expectations.run --suite events --sample-rows 20000
    python -m expectations.run --suite notes --suite splits --no-docs

Exit status: 0 when every critical expectation passed (warn-level failures are only reported), 1 when a
critical one failed, 2 on an error (warehouse missing or locked, marts not built).
Results: `select * from dq.expectation_results where run_id = '<run id printed below>'`.
Data Docs: reports/data_docs/index.html (or --docs-dir).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from ehrforge import warehouse
from ehrforge.errors import ConfigError, EhrforgeError, exit_code
from expectations.config import Settings, default_docs_dir, ranges_sha256
from expectations.core import Frame, SuiteSpec
from expectations.suites import SUITES

log = logging.getLogger(__name__)

RESULTS_TABLE = "dq.expectation_results"
CHECKPOINT = "ehrforge_marts"
DOCS_SITE = "ehrforge"


@dataclasses.dataclass
class Outcome:
    run_id: str
    results: pd.DataFrame
    docs_index: Path | None
    seconds: float

    @property
    def failed_critical(self) -> pd.DataFrame:
        r = self.results
        return r[(r["severity"] == "critical") & (r["success"] == False)]  # noqa: E712 (nullable)

    @property
    def failed_warn(self) -> pd.DataFrame:
        r = self.results
        return r[(r["severity"] == "warn") & (r["success"] == False)]  # noqa: E712

    @property
    def exit_code(self) -> int:
        return 1 if len(self.failed_critical) else 0

    def result(self, name: str) -> dict:
        """The result row of the expectation named `name` (meta name, e.g. 'item_range.50931')."""
        rows = self.results[self.results["expectation_name"] == name]
        if len(rows) != 1:
            raise KeyError(f"{len(rows)} results named {name!r}")
        return rows.iloc[0].to_dict()


# --- messages ----------------------------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _expected(etype: str, kwargs: dict) -> str:
    parts = []
    if "min_value" in kwargs or "max_value" in kwargs:
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        if lo is not None and hi is not None:
            parts.append(f"between {_fmt(lo)} and {_fmt(hi)}")
        elif lo is not None:
            parts.append(f">= {_fmt(lo)}")
        elif hi is not None:
            parts.append(f"<= {_fmt(hi)}")
    if "value_set" in kwargs:
        vs = kwargs["value_set"]
        verb = "containing" if etype.endswith("to_contain_set") else "in"
        parts.append(f"{verb} {sorted(map(str, vs))[:12]}" + (" ..." if len(vs) > 12 else ""))
    if "column_A" in kwargs:
        parts.append(f"{kwargs['column_A']} vs {kwargs['column_B']}")
    if kwargs.get("mostly") is not None and kwargs["mostly"] < 1:
        parts.append(f"for at least {kwargs['mostly']:.1%} of rows")
    return " ".join(parts) or "true"


def _observed(etype: str, kwargs: dict, result: dict) -> tuple[Any, str]:
    """(JSON-able observed value, human text) from a GX result dict."""
    if "partial_missing_list" in result or "missing_count" in result and "observed_value" in result:
        # expect_column_distinct_values_to_contain_set (GX 1.24 reports what is missing, not what was seen)
        missing = result.get("partial_missing_list") or []
        return {"missing": missing}, (f"missing {missing}" if missing else "all expected values present")
    if "observed_value" in result:
        obs = result["observed_value"]
        return obs, f"observed {_fmt(obs)}"
    if "unexpected_count" in result:
        column = kwargs.get("column")
        examples = []
        for row in (result.get("partial_unexpected_index_list") or [])[:5]:
            if isinstance(row, dict):
                key = row.get("row_key")
                vals = [f"{k}={_fmt(v)}" for k, v in row.items() if k != "row_key"]
                examples.append(f"{', '.join(vals)} (row_key {key})" if key is not None else ", ".join(vals))
        if not examples:
            examples = [_fmt(v) for v in (result.get("partial_unexpected_list") or [])[:5]]
        n, bad = result.get("element_count") or 0, result.get("unexpected_count") or 0
        pct = result.get("unexpected_percent") or 0.0
        obs = {"unexpected_count": bad, "element_count": n, "unexpected_percent": pct, "examples": examples}
        text = f"{bad} of {n} rows unexpected ({pct:.3g}%)" + (f", e.g. {'; '.join(examples)}" if examples else "")
        if column and not examples:
            text += f" in {column}"
        return obs, text
    return None, "no observed value"


def _condition(kwargs: dict) -> str | None:
    """The row condition as text, e.g. itemid == "50931" (GX stores Condition objects as dicts)."""
    cond = kwargs.get("row_condition")
    if isinstance(cond, dict):
        if cond.get("type") == "comparison":
            cond = f"{cond['column']['name']} {cond['operator']} {json.dumps(cond['parameter'], default=str)}"
        else:
            cond = cond.get("pass_through_filter") or json.dumps(cond, default=str)
    return cond or None


def _message(frame: Frame, meta: dict, etype: str, kwargs: dict, success: bool | None, obs_text: str) -> str:
    column = kwargs.get("column") or (
        f"{kwargs['column_A']}/{kwargs['column_B']}" if "column_A" in kwargs else "<table>")
    cond = f" where {_condition(kwargs)}" if _condition(kwargs) else ""
    verdict = "passed" if success else "FAILED"
    return (f"{verdict} [{meta.get('severity')}] {meta.get('name')}: {frame.source} {column}{cond}: {obs_text}; "
            f"expected {_expected(etype, kwargs)}. Why: {meta.get('why', '')}")


# --- GX ----------------------------------------------------------------------------------------------------

def _gx_context(docs_dir: Path | None):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)  # GX sets INFO on the latter itself
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    # The ephemeral context's default site points at a fresh temp folder: drop it (and the folder).
    for name, site in dict(ctx.get_config().data_docs_sites or {}).items():
        base = ((site or {}).get("store_backend") or {}).get("base_directory")
        ctx.delete_data_docs_site(name)
        if base and Path(base).is_dir() and not any(Path(base).iterdir()):
            Path(base).rmdir()
    if docs_dir is not None:
        ctx.add_data_docs_site(site_name=DOCS_SITE, site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    return ctx


def _validate(frames: list[tuple[Frame, Path]], frames_dir: Path, docs_dir: Path | None) -> dict[str, list]:
    """Suites, validation definitions and one checkpoint over every frame file; returns GX results per frame."""
    import great_expectations as gx

    ctx = _gx_context(docs_dir)
    source = ctx.data_sources.add_pandas_filesystem("marts_frames", base_directory=frames_dir)
    definitions = []
    for frame, path in frames:
        asset = source.add_parquet_asset(frame.gx_name)
        batch = asset.add_batch_definition_path(frame.gx_name, path=path.name)
        # Passing the expectations at construction stores the suite once; add_expectation re-serialises the
        # whole suite on every call (quadratic: 14 s for the events suite).
        suite = ctx.suites.add(gx.ExpectationSuite(
            name=frame.gx_name, expectations=list(frame.expectations),
            meta={"source": frame.source, "kind": frame.kind, "description": frame.description}))
        definitions.append(ctx.validation_definitions.add(
            gx.ValidationDefinition(name=frame.gx_name, data=batch, suite=suite)))
    actions = [gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[DOCS_SITE])] if docs_dir else []
    checkpoint = ctx.checkpoints.add(gx.Checkpoint(
        name=CHECKPOINT, validation_definitions=definitions, actions=actions,
        result_format={"result_format": "SUMMARY", "unexpected_index_column_names": ["row_key"],
                       "partial_unexpected_count": 10},
    ))
    result = checkpoint.run()
    out: dict[str, list] = {}
    for vr in result.run_results.values():
        out[vr.suite_name] = [r.to_json_dict() for r in vr.results]
    return out


def _reset_docs(docs_dir: Path) -> None:
    """Data Docs show the latest run (history is in dq.expectation_results): clear pages of earlier runs, but
    only in a folder that holds nothing but Data Docs."""
    if docs_dir.exists() and any(docs_dir.iterdir()):
        if not (docs_dir / "index.html").exists():
            raise ConfigError(f"--docs-dir {docs_dir} is not empty and holds no Data Docs; choose another folder")
        for sub in ("validations", "expectations"):
            shutil.rmtree(docs_dir / sub, ignore_errors=True)
    docs_dir.mkdir(parents=True, exist_ok=True)


# --- the run -----------------------------------------------------------------------------------------------

def _fingerprint(con: duckdb.DuckDBPyConnection) -> dict:
    """What data was validated: the last dbt build and the instruction runs, so a new build gets a new run id."""
    fp: dict[str, Any] = {}
    if warehouse.table_exists(con, "meta.dbt_builds"):
        row = con.execute("select invocation_id from meta.dbt_builds order by finished_at desc limit 1").fetchone()
        fp["dbt_invocation_id"] = row[0] if row else None
    if warehouse.table_exists(con, "synthesis.instructions") and "run_id" in warehouse.table_columns(
            con, "synthesis.instructions"):
        fp["instruction_runs"] = [r[0] for r in con.execute(
            "select distinct run_id from synthesis.instructions order by 1").fetchall()]
    return fp


def _row(suite: str, frame: Frame | None, exp_conf: dict, success: bool | None, status: str, observed: Any,
         message: str, result: dict | None, now: dt.datetime) -> dict:
    meta = exp_conf.get("meta") or {}
    kwargs = exp_conf.get("kwargs") or {}
    result = result or {}
    return {
        "suite": suite,
        "frame": frame.name if frame else None,
        "gx_suite": frame.gx_name if frame else None,
        "source_table": frame.source if frame else None,
        "expectation_name": meta.get("name"),
        "expectation_type": exp_conf.get("type"),
        "column_name": kwargs.get("column") or kwargs.get("column_A"),
        "row_condition": _condition(kwargs),
        "kwargs": json.dumps({k: v for k, v in kwargs.items() if k not in ("batch_id",)}, default=str,
                             sort_keys=True),
        "severity": meta.get("severity", "warn"),
        "success": success,
        "status": status,
        "observed_value": None if observed is None else json.dumps(observed, default=str)[:4000],
        "element_count": result.get("element_count"),
        "unexpected_count": result.get("unexpected_count"),
        "unexpected_percent": result.get("unexpected_percent"),
        "message": message,
        "validated_at": now,
    }


def _conf(exp) -> dict:
    return exp.configuration.to_json_dict()


def run_expectations(
    con: duckdb.DuckDBPyConnection,
    settings: Settings | None = None,
    suites: list[str] | None = None,
    docs_dir: Path | None = None,
    write: bool = True,
) -> Outcome:
    """Validate the chosen suites (all by default) and write one row per expectation to dq.expectation_results."""
    t0 = time.perf_counter()
    settings = settings or Settings()
    names = suites or list(SUITES)
    unknown = [s for s in names if s not in SUITES]
    if unknown:
        raise ConfigError(f"unknown suite(s) {unknown}; choose from {list(SUITES)}")
    settings = settings.model_copy(update={"suites": names, "ranges_sha256": ranges_sha256()})
    specs: list[SuiteSpec] = [SUITES[s] for s in names]
    if settings.memory_limit:
        con.execute(f"set memory_limit = '{settings.memory_limit}'")
    for spec in specs:
        if not spec.optional:
            warehouse.require_tables(con, spec.tables)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    computed, rows = _compute_frames(con, specs, settings, now)
    if computed:
        rows += _validate_frames(computed, docs_dir, now)
    results = _results_frame(rows, names)
    run_id = _record(con, settings, results) if write else ""
    index = docs_dir / "index.html" if docs_dir is not None and computed else None
    return Outcome(run_id, results, index, time.perf_counter() - t0)


def _compute_frames(con, specs: list[SuiteSpec], settings: Settings,
                    now: dt.datetime) -> tuple[list[tuple[Frame, pd.DataFrame]], list[dict]]:
    """Each suite's small DuckDB-computed frames; rows for suites skipped (no rows yet) or frames that failed."""
    rows: list[dict] = []
    computed: list[tuple[Frame, pd.DataFrame]] = []
    for spec in specs:
        # an optional suite's tables are Python-written: created empty by the build, filled by a later job
        missing = [t for t in spec.tables if spec.optional and not (warehouse.table_exists(con, t) and
                   warehouse.fetch_scalar(con, f"select exists (select 1 from {t})"))]
        if missing:
            rows.append(_row(spec.name, None, {"type": "table_present", "meta": {
                "name": f"{spec.name}.present", "severity": "warn"}}, None, "not_present", None,
                f"not present: {', '.join(missing)} has no rows yet, suite {spec.name} skipped "
                "(it runs once the table is written)", None, now))
            continue
        for frame in spec.build(settings):
            try:
                computed.append((frame, frame.compute(con, settings)))
            except duckdb.Error as exc:
                first = str(exc).strip().splitlines()[0]
                for exp in frame.expectations:
                    conf = _conf(exp)
                    msg = (f"FAILED [{conf['meta'].get('severity')}] {conf['meta'].get('name')}: {frame.source}: "
                           f"frame {frame.gx_name} could not be computed ({first}); see the schema check")
                    rows.append(_row(spec.name, frame, conf, False, "error", None, msg, None, now))
    return computed, rows


def _validate_frames(computed: list[tuple[Frame, pd.DataFrame]], docs_dir: Path | None,
                     now: dt.datetime) -> list[dict]:
    """GX over the frames (as parquet files, one checkpoint); one row per expectation result."""
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ehrforge-gx-") as tmp:
        paths = []
        for frame, df in computed:
            path = Path(tmp) / f"{frame.gx_name}.parquet"
            df.to_parquet(path, index=False)
            paths.append((frame, path))
        if docs_dir is not None:
            _reset_docs(docs_dir)
        gx_results = _validate(paths, Path(tmp), docs_dir)
    for frame, _ in computed:
        for res in gx_results.get(frame.gx_name, []):
            conf = res["expectation_config"]
            meta = conf.get("meta") or {}
            result = res.get("result") or {}
            exc = res.get("exception_info") or {}
            if exc.get("raised_exception"):
                status, success = "error", False
                observed, text = None, f"GX raised: {exc.get('exception_message')}"
            else:
                success = bool(res["success"])
                status = "passed" if success else "failed"
                observed, text = _observed(conf["type"], conf.get("kwargs") or {}, result)
            msg = _message(frame, meta, conf["type"], conf.get("kwargs") or {}, success, text)
            rows.append(_row(frame.suite, frame, conf, success, status, observed, msg, result, now))
    return rows


def _results_frame(rows: list[dict], names: list[str]) -> pd.DataFrame:
    order = {name: i for i, name in enumerate(names)}
    results = pd.DataFrame(rows)
    results = results.sort_values("suite", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
    results["success"] = results["success"].astype("boolean")
    for col in ("element_count", "unexpected_count"):
        results[col] = pd.to_numeric(results[col]).astype("Int64")
    results["unexpected_percent"] = pd.to_numeric(results["unexpected_percent"]).astype("Float64")
    return results


def _record(con, settings: Settings, results: pd.DataFrame) -> str:
    """One run in meta.runs (failed when a critical expectation failed) and its rows in dq.expectation_results."""
    # resources do not change verdicts, so they stay out of the run id
    config = {**settings.model_dump(mode="json", exclude={"memory_limit", "dedup_partitions"}),
              "data": _fingerprint(con)}
    run = warehouse.start_run(con, job="expectations", config=config)
    warehouse.write_table(con, RESULTS_TABLE, results, run, replace="run")
    status = "failed" if (results["severity"].eq("critical") & results["success"].eq(False)).any() else "succeeded"
    warehouse.finish_run(con, run, status=status)
    return run.run_id


# --- CLI ---------------------------------------------------------------------------------------------------

def _summary(outcome: Outcome) -> str:
    r = outcome.results
    lines = [f"{'suite':<14}{'passed':>8}{'failed crit':>13}{'failed warn':>13}{'other':>7}"]
    for suite, g in r.groupby("suite", sort=False):
        passed = int((g["status"] == "passed").sum())
        fc = int(((g["severity"] == "critical") & (g["success"] == False)).sum())  # noqa: E712
        fw = int(((g["severity"] == "warn") & (g["success"] == False)).sum())  # noqa: E712
        other = int(g["status"].isin(["not_present"]).sum())
        lines.append(f"{suite:<14}{passed:>8}{fc:>13}{fw:>13}{other:>7}")
    for _, row in pd.concat([outcome.failed_critical, outcome.failed_warn]).iterrows():
        lines.append("  " + row["message"])
    for _, row in r[r["status"] == "not_present"].iterrows():
        lines.append("  " + row["message"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m expectations.run", description=__doc__.splitlines()[0])
    p.add_argument("--suite", action="append", choices=list(SUITES), help="run only this suite (repeatable)")
    p.add_argument("--sample-rows", type=int, help="rows per seeded sample frame (default 50000)")
    p.add_argument("--item-sample-rows", type=int, help="seeded values per reviewed itemid (default 5000)")
    p.add_argument("--seed", type=int, help="sampling seed (default 42)")
    p.add_argument("--memory-limit", help="DuckDB memory limit for the run, e.g. 8GB (large marts spill to disk)")
    p.add_argument("--dedup-partitions", type=int, help="hash partitions for the unique event id count (0 = auto)")
    p.add_argument("--docs-dir", type=Path, default=None, help="Data Docs folder (default reports/data_docs)")
    p.add_argument("--no-docs", action="store_true", help="do not render Data Docs")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    overrides = {k: v for k, v in {"sample_rows": args.sample_rows, "item_sample_rows": args.item_sample_rows,
                                   "seed": args.seed, "memory_limit": args.memory_limit,
                                   "dedup_partitions": args.dedup_partitions}.items() if v is not None}
    docs_dir = None if args.no_docs else (args.docs_dir or default_docs_dir())
    try:
        settings = Settings(**overrides)
        with warehouse.session(must_exist=True) as con:
            outcome = run_expectations(con, settings, args.suite, docs_dir)
    except EhrforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except ValueError as exc:  # pydantic validation of the flags
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_summary(outcome))
    print(f"run {outcome.run_id}: {len(outcome.results)} expectations in {outcome.seconds:.1f} s; "
          f"results: select * from {RESULTS_TABLE} where run_id = '{outcome.run_id}'")
    if outcome.docs_index:
        print(f"Data Docs: {outcome.docs_index}")
    if outcome.exit_code:
        print(f"{len(outcome.failed_critical)} critical expectation(s) failed", file=sys.stderr)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
