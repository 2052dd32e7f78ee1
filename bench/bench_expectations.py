"""Validation cost of the events suite as the events mart grows: DuckDB frames + GX vs whole-mart pandas GX.

    python bench/bench_expectations.py                          # = make bench-expectations; N = 1, 5, 20
    python bench/bench_expectations.py --scales 1,20 --baseline-max-scale 5 --memory-limit 1GB

For each N, a copy of the warehouse gets a marts.fct_events holding N re-keyed copies of the demo's events
(811,931 x N rows). Two routes, each in its own process so peak RSS is its own:
  ours      expectations.run over the events suite (aggregates, per-partition duplicate count and seeded
            samples computed in DuckDB; GX validates the small frames): 148 expectations
  baseline  the usual GX pandas route: load the mart (only the 4 columns the checks need, which flatters it)
            into pandas and validate the same 26 physiological ranges + unique event_id on the whole frame
Prints wall seconds, peak RSS and the ratio baseline/ours. Without --memory-limit DuckDB keeps scanned
blocks cached up to its default limit (80% of RAM), which shows up in our peak RSS. The source-count checks
fail at N > 1 (the staging views are not scaled); the benchmark measures cost, not verdicts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _child(route: str, path: str, memory_limit: str) -> None:
    import duckdb

    t0 = time.perf_counter()
    if route == "ours":
        from expectations.config import Settings
        from expectations.run import run_expectations

        con = duckdb.connect(path)
        settings = Settings(memory_limit=memory_limit or None)
        outcome = run_expectations(con, settings, ["events"], docs_dir=None, write=False)
        n_exp = len(outcome.results)
    else:
        import great_expectations as gx
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from great_expectations.expectations.row_conditions import Column

        from expectations.config import load_ranges

        con = duckdb.connect(path, read_only=True)
        df = con.execute("select event_id, itemid, value_num, unit from marts.fct_events").df()
        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        batch = (ctx.data_sources.add_pandas("p").add_dataframe_asset("events")
                 .add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": df}))
        ranges = load_ranges()
        exps = [gxe.ExpectColumnValuesToBeUnique(column="event_id")] + [
            gxe.ExpectColumnValuesToBeBetween(column="value_num", min_value=s["min"], max_value=s["max"],
                                              mostly=ranges["mostly"], row_condition=Column("itemid") == i)
            for i, s in ranges["items"].items()
        ]
        suite = ctx.suites.add(gx.ExpectationSuite(name="events_whole", expectations=exps))
        batch.validate(suite)
        n_exp = len(exps)
    wall = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": wall, "peak_rss_mb": rss_mb, "n_expectations": n_exp}))


def _scale(base: Path, work: Path, n: int) -> tuple[Path, int]:
    """Build the N-times copy in a separate process: Linux keeps a process's peak RSS across fork+exec, so a
    parent that grew while scaling would inflate every child's figure."""
    path = work / f"events_x{n}.duckdb"
    shutil.copy(base, path)
    out = subprocess.run([sys.executable, __file__, "--scale-child", str(path), str(n)], capture_output=True,
                         text=True, cwd=ROOT, check=True)
    return path, int(out.stdout.strip().splitlines()[-1])


def _scale_child(path: str, n: int) -> None:
    import duckdb

    con = duckdb.connect(path)
    if n > 1:
        con.execute("alter table marts.fct_events rename to fct_events_demo")
        con.execute(f"""
            create table marts.fct_events as
            select e.* replace (case when k = 0 then e.event_id else md5(e.event_id || ':' || k) end as event_id)
            from marts.fct_events_demo e, range({n}) t(k)
            order by hadm_id, event_time
        """)
        con.execute("drop table marts.fct_events_demo")
    print(con.execute("select count(*) from marts.fct_events").fetchone()[0])
    con.close()


def _run(route: str, path: Path, memory_limit: str = "") -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", route, str(path), memory_limit],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", default="1,5,20")
    p.add_argument("--baseline-max-scale", type=int, default=5, help="skip the pandas route above this N (memory)")
    p.add_argument("--warehouse",
                   default=os.environ.get("EHRFORGE_DUCKDB", str(ROOT / "warehouse" / "ehrforge.duckdb")))
    p.add_argument("--memory-limit", default="", help="DuckDB memory_limit for our route, e.g. 1GB")
    p.add_argument("--child", nargs=3, metavar=("ROUTE", "PATH", "MEMORY_LIMIT"), help=argparse.SUPPRESS)
    p.add_argument("--scale-child", nargs=2, metavar=("PATH", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.scale_child:
        _scale_child(args.scale_child[0], int(args.scale_child[1]))
        return
    if args.child:
        _child(*args.child)
        return
    base = Path(args.warehouse)
    if not base.exists():
        sys.exit(f"error: no warehouse at {base}: run `make build` or set EHRFORGE_DUCKDB")
    print(f"{'N':>4} {'events':>12} {'route':>9} {'wall_s':>8} {'peak_rss_mb':>12} {'exps':>5} {'baseline/ours':>14}")
    with tempfile.TemporaryDirectory(prefix="bench-gx-") as tmp:
        for n in [int(x) for x in args.scales.split(",")]:
            path, rows = _scale(base, Path(tmp), n)
            ours = _run("ours", path, args.memory_limit)
            base_res = _run("baseline", path) if n <= args.baseline_max_scale else {"skipped": True}
            for route, r in (("ours", ours), ("baseline", base_res)):
                if "wall_s" in r:
                    ratio = ""
                    if route == "baseline" and "wall_s" in ours:
                        ratio = (f"{r['wall_s'] / ours['wall_s']:.2f}x time, "
                                 f"{r['peak_rss_mb'] / ours['peak_rss_mb']:.2f}x RSS")
                    print(f"{n:>4} {rows:>12,} {route:>9} {r['wall_s']:>8.1f} {r['peak_rss_mb']:>12.0f} "
                          f"{r['n_expectations']:>5} {ratio:>14}", flush=True)
                else:
                    print(f"{n:>4} {rows:>12,} {route:>9} {json.dumps(r)}", flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
