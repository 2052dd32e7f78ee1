"""Build an instruction set from the warehouse marts into synthesis.instructions, then export it.

    python -m synthesis.cli --config synthesis/configs/demo.yaml [key=value ...]     # = make synthesize
    python -m synthesis.cli --config synthesis/configs/demo.yaml --list-tasks

Deterministic for a seed; the run id is `synthesis-<config hash>-<data version>` (the data version hashes the marts
the run reads) and every instruction id includes the version of the source rows it was built from, so the same data
and config give the same ids and changed data gives new ones. A re-run of a dataset replaces that dataset's rows (no
duplicates). Prints a table of counts per task and split at the end; a task that made no rows says why.
Exit status: 0 done; 2 bad input or config (incl. marts from an unfinished or failed build, a PHI-guard refusal);
1 the run failed. Any error marks the run `failed` in meta.runs with the reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import pandas as pd

from ehrforge import tables, warehouse
from ehrforge.config import config_hash
from ehrforge.errors import EhrforgeError, InputDataError, exit_code
from ehrforge.instructions import ANSWER_TYPES
from synthesis import EXTRA_TABLES, INSTRUCTIONS_TABLE, LLM_OUTPUTS_TABLE, SYNTHETIC_NOTES_TABLE
from synthesis.config import SynthesisConfig, load_synthesis_config
from synthesis.context import BuildContext
from synthesis.llm_io import dumps
from synthesis.registry import TASKS, load_all_tasks, stable_hash, versioned_id

log = logging.getLogger("synthesis")


def _order(names: list[str]) -> list[str]:
    """Tasks in dependency order (a paraphrase task runs after the tasks whose questions it rephrases)."""
    done: list[str] = []
    pending = list(names)
    while pending:
        progressed = False
        for n in list(pending):
            if all(d in done or d not in names for d in TASKS[n].depends_on):
                done.append(n)
                pending.remove(n)
                progressed = True
        if not progressed:
            raise InputDataError(f"task dependency cycle among {pending}")
    return done


def validate_rows(rows: pd.DataFrame) -> None:
    """Refuse to write rows that break the table's contract (nothing is written then)."""
    problems = []
    if rows["instruction_id"].duplicated().any():
        dups = rows.loc[rows["instruction_id"].duplicated(), "instruction_id"].head(3).tolist()
        problems.append(f"duplicate instruction_id: {dups}")
    for col in ("split", "instruction", "answer", "answer_type", "lineage", "task", "task_version"):
        bad = rows[col].isna() | (rows[col].astype(str).str.strip() == "")
        if bad.any():
            example = rows.loc[bad, "instruction_id"].head(2).tolist()
            problems.append(f"{bad.sum()} row(s) with empty {col} (e.g. {example})")
    bad_types = sorted(set(rows["answer_type"]) - set(ANSWER_TYPES))
    if bad_types:
        problems.append(f"unknown answer_type {bad_types}")
    if problems:
        raise InputDataError("instruction rows failed validation, nothing written: " + "; ".join(problems))


def data_version(con, tables: list[str]) -> str:
    """Version of the data a run reads: row count and an order-free sum of row hashes of each table (one scan each).
    Not the dbt invocation id: rebuilding the same raw files gives the same version. DuckDB's hash() is stable for
    a DuckDB version; an upgrade may change run ids (instruction ids do not depend on it)."""
    parts = []
    for t in sorted(tables):
        n, h = con.execute(f"select count(*), coalesce(sum(hash(t)), 0) from {t} t").fetchone()
        parts.append((t, int(n), str(h)))
    return stable_hash(*parts, n=12)


def finalize_ids(ctx, name: str, rows: list[dict]) -> None:
    """Give each row of task `name` its written id: key id + version of its source rows (the row's `_data`), and
    point the task's logged LLM outputs and its rows' few-shot references (lineage shot_ids) at the new ids."""
    remap = {}
    for r in rows:
        data = r.pop("_data", None)
        if not data:
            raise InputDataError(f"task {name} built a row without its source data version (`_data`): "
                                 f"{r.get('instruction_id')}; every task must set it (see registry.versioned_id)")
        new = versioned_id(name, r["instruction_id"], data)
        remap[r["instruction_id"]] = new
        r["instruction_id"] = new
    for r in rows:
        if '"shot_ids"' in r["lineage"]:
            lin = json.loads(r["lineage"])
            lin["shot_ids"] = [remap.get(s, s) for s in lin["shot_ids"]]
            r["lineage"] = dumps(lin)
    for out in ctx.extra_tables.get(LLM_OUTPUTS_TABLE) or []:
        if out["task"] == name and out.get("instruction_id") in remap:
            out["instruction_id"] = remap[out["instruction_id"]]


def why_no_rows(ctx, name: str) -> str:
    """The run summary's reason for a task with no rows (a task may have set a precise one)."""
    st = ctx.stats.setdefault(name, {})
    if st.get("llm_requests"):  # prompts were made: the summary shows the rejection reasons
        return f"all {st['llm_requests']} outputs rejected ({', '.join(sorted(st.get('rejections', {})))})"
    if "no_rows_reason" not in st:
        if ctx.cfg.task_config(name).quota == 0:
            st["no_rows_reason"] = "quota is 0"
        else:
            st["no_rows_reason"] = f"no candidate in the {len(ctx.admissions)} cohort admissions"
    return st["no_rows_reason"]


def synthesize(cfg: SynthesisConfig, con=None) -> dict:
    """Run every enabled task of `cfg`, write synthesis.instructions (replacing this dataset), export.
    Returns a summary: run_id, counts (DataFrame task x split), per-task stats, wall time, export paths."""
    load_all_tasks()
    own = con is None
    con = con or warehouse.connect(must_exist=True)
    started = time.monotonic()
    try:
        needed = sorted({m for n in cfg.tasks for m in TASKS[n].source_marts if m.startswith("marts.")}
                        | {"marts.dim_splits", "marts.dim_admissions"})
        warehouse.require_tables(con, needed)
        warehouse.require_finished_build(con)
        version = data_version(con, needed)
        run = warehouse.start_run(con, job="synthesis", config=cfg,
                                  run_id=f"synthesis-{config_hash(cfg)[:12]}-{version}")
        with warehouse.failing_run(con, run):
            ctx = BuildContext(con=con, cfg=cfg, run=run).load()
            names = [n for n in cfg.tasks if cfg.task_config(n).enabled]
            timings = {}
            for name in _order(names):
                t0 = time.monotonic()
                task = TASKS[name]
                rows = task.build(ctx, cfg.task_config(name))
                finalize_ids(ctx, name, rows)
                if not rows:
                    log.warning("%s made no rows: %s", name, why_no_rows(ctx, name))
                for r in rows:
                    # rows about a MIMIC patient take the patient's split; rows over public case reports (no
                    # patient) carry the case report's split from marts.dim_case_reports
                    if r.get("subject_id") is not None or not r.get("split"):
                        r["split"] = ctx.split_of(r["subject_id"])
                    r["dataset"] = cfg.dataset
                ctx.rows_so_far[name] = rows
                timings[name] = time.monotonic() - t0
                log.info("%s: %d rows in %.1fs", name, len(rows), timings[name])
            all_rows = [r for n in ctx.rows_so_far for r in ctx.rows_so_far[n]]
            df = pd.DataFrame(all_rows, columns=tables.columns(INSTRUCTIONS_TABLE, with_run_columns=False))
            df["subject_id"] = df["subject_id"].astype("Int64")  # null for rows over public case reports
            df["hadm_id"] = df["hadm_id"].astype("Int64")
            df["seed"] = df["seed"].astype("int64")
            if df.empty:
                raise InputDataError("the config produced no instruction rows; raise the quotas or enable tasks")
            validate_rows(df)
            _write_instructions(con, df, run, cfg.dataset)
            for table in EXTRA_TABLES:
                extra = ctx.extra_tables.get(table)
                if extra:
                    warehouse.write_table(con, table, tables.frame(table, extra), run, replace="key", key=["dataset"])
                elif table == SYNTHETIC_NOTES_TABLE and "case_report_note" not in names:
                    continue  # written by case_report_note only; a config without it (note_qa over them) keeps them
                elif warehouse.table_exists(con, table):  # this run made none: drop the dataset's stale ones
                    con.execute(f"delete from {table} where dataset = ?", [cfg.dataset])
            counts = summary_counts(con, cfg.dataset)
            export_paths = None
            if cfg.export:
                from synthesis.export import export_dataset

                export_paths = export_dataset(con, cfg.dataset, cfg.export_dir, ctx.stats)
            warehouse.finish_run(con, run)
        return {"run_id": run.run_id, "data_version": version, "counts": counts, "stats": ctx.stats, "timings": timings,
                "n_rows": len(df), "wall_s": time.monotonic() - started, "export": export_paths}
    finally:
        if own:
            con.close()


def _write_instructions(con, df: pd.DataFrame, run, dataset: str) -> None:
    # one dataset = one config's output: replacing by dataset keeps a re-run (or an edited config) duplicate-free
    warehouse.write_table(con, INSTRUCTIONS_TABLE, df, run, replace="key", key=["dataset"])


def summary_counts(con, dataset: str) -> pd.DataFrame:
    df = con.execute(
        f"select task, split, count(*) n from {INSTRUCTIONS_TABLE} where dataset = ? group by all", [dataset]).df()
    table = df.pivot_table(index="task", columns="split", values="n", aggfunc="sum", fill_value=0)
    for s in ("train", "val", "test"):
        if s not in table.columns:
            table[s] = 0
    table = table[["train", "val", "test"]]
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    return table.astype(int)


def print_summary(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    counts: pd.DataFrame = result["counts"]
    t = Table(title=f"synthesis run {result['run_id']} ({result['n_rows']} rows, {result['wall_s']:.1f}s)")
    t.add_column("task")
    for c in counts.columns:
        t.add_column(c, justify="right")
    t.add_column("notes")
    for task in sorted(set(result["stats"]) - set(counts.index)):  # tasks without rows (rejected, or none made)
        counts.loc[task] = 0
    counts = counts.loc[sorted(i for i in counts.index if i != "total") + ["total"]]
    for task, row in counts.iterrows():
        st = result["stats"].get(task, {})
        note = ""
        if "llm_requests" in st:
            note = f"{st['llm_requests']} prompts: {st['llm_calls']} calls, {st['llm_cached']} cached"
            if "accepted" in st:
                note += f"; {st['accepted']} accepted"
            rej = st.get("rejections")
            if rej:
                note += "; rejected " + ", ".join(f"{k}={v}" for k, v in sorted(rej.items()))
        if "no_rows_reason" in st and not st.get("llm_requests"):
            note = f"{'no prompts' if TASKS[task].uses_llm else 'no rows'}: {st['no_rows_reason']}"
        elif st.get("n_notes_text_shared_across_splits"):
            note += ("; " if note else "") + (f"{st['n_notes_text_shared_across_splits']} note(s) left out "
                                              "(text shared across splits)")
        t.add_row(str(task), *[str(v) for v in row.tolist()], note)
    Console().print(t)
    if result.get("export"):
        print(f"exported to {result['export']['dir']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="synthesis/configs/demo.yaml")
    parser.add_argument("--list-tasks", action="store_true", help="print the registered tasks and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. seed=3 tasks.template_qa.quota=50")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.list_tasks:
            for name, task in sorted(load_all_tasks().items()):
                print(f"{name:18s} v{task.version:5s} llm={str(task.uses_llm).lower():5s} {', '.join(task.source_marts)}")
            return 0
        overrides = list(args.overrides) + (["progress=false"] if args.quiet else [])
        cfg = load_synthesis_config(args.config, overrides)
        result = synthesize(cfg)
        print_summary(result)
        return 0
    except EhrforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)  # 2 bad input or config, 1 the run failed (docs/crash-safety.md)


if __name__ == "__main__":
    sys.exit(main())
