"""Warehouse build speed: `dbt build` vs the floor of one DuckDB scan over the same input files.

    python bench/bench_warehouse.py                  # N = 1 and 20 (makes bench/out/demo_x20 first if absent)
    python bench/bench_warehouse.py --n 1            # demo only

For each N it prints wall time, input rows/s, the ratio to the floor and peak RSS. The floor reads every raw
file the project declares as a source once (`count(*)` over `read_csv`, same dialect as the build) in one DuckDB
process; the load floor parses every file once into DuckDB tables; the build is the full `dbt build` (sources, staging, marts and all tests) into a fresh DuckDB file.
Each measurement runs in its own process so its peak RSS is its own. Targets (2 cores): demo build < 60 s;
at 20x, wall <= 2x floor and peak RSS <= 4 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from scale_demo import CSV  # noqa: E402  (the dialect the dbt source hook uses)


def _input_files(root: Path, note_root: Path) -> list[Path]:
    from ehrforge.build import raw_file, source_tables

    files = []
    for module, table, _cols, _opt in source_tables():
        path = raw_file(note_root if module == "note" else root / module, table)
        if path is not None and path.name.endswith(".csv.gz"):  # the floors parse the CSV the build reads
            files.append(path)
    return files


def _reader(f: Path) -> str:
    return f"read_csv('{f}', {CSV}" + (", strict_mode = false" if f.name == "d_hcpcs.csv.gz" else "") + ")"


def child_floor(root: Path, note_root: Path) -> dict:
    import duckdb

    con = duckdb.connect()
    con.execute("set preserve_insertion_order = false")
    t = time.perf_counter()
    rows = 0
    for f in _input_files(root, note_root):
        rows += con.execute(f"select count(*) from {_reader(f)}").fetchall()[0][0]
    return {"wall_s": time.perf_counter() - t, "rows": rows}


def child_load(root: Path, note_root: Path, db: Path) -> dict:
    """A second, stricter floor: parse every input file once and store it as a DuckDB table (what any warehouse
    load must do at least), into a fresh file with the build's memory limit."""
    import duckdb

    db.parent.mkdir(parents=True, exist_ok=True)
    if db.exists():
        db.unlink()
    con = duckdb.connect(str(db))
    con.execute("set preserve_insertion_order = false; set memory_limit = '3GB'")
    t = time.perf_counter()
    for i, f in enumerate(_input_files(root, note_root)):
        con.execute(f"create table t{i} as select * from {_reader(f)}")
    con.close()
    return {"wall_s": time.perf_counter() - t}


def child_build(root: Path, note_root: Path, db: Path) -> dict:
    """The full `dbt build` into a fresh file; also where the time went (per model and test, from dbt's
    run_results.json) and the warehouse's size on disk."""
    target = db.parent / f"{db.stem}_target"
    os.environ.update({"MIMIC_ROOT": str(root), "MIMIC_NOTE_ROOT": str(note_root), "EHRFORGE_DUCKDB": str(db),
                       "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_TARGET_PATH": str(target)})
    db.parent.mkdir(parents=True, exist_ok=True)
    if db.exists():
        db.unlink()
    from ehrforge.build import run_dbt

    t = time.perf_counter()
    ok = run_dbt(["build", "--quiet"])
    wall = time.perf_counter() - t
    nodes = []
    results = target / "run_results.json"
    if results.exists():
        for r in json.loads(results.read_text())["results"]:
            kind, _project, name = r["unique_id"].split(".")[:3]
            nodes.append({"kind": kind, "node": name, "s": round(r["execution_time"], 2)})
        nodes.sort(key=lambda r: -r["s"])
    return {"wall_s": wall, "ok": ok, "disk_mb": db.stat().st_size / 2**20 if db.exists() else None, "nodes": nodes}


def measure(kind: str, root: Path, note_root: Path, db: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--root", str(root), "--note-root", str(note_root), "--db", str(db)],
        capture_output=True, text=True, cwd=REPO,
    )
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="*", default=[1, 20])
    p.add_argument("--child", choices=["floor", "load", "build"])
    p.add_argument("--root", type=Path)
    p.add_argument("--note-root", type=Path)
    p.add_argument("--db", type=Path)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out", help="scaled copies, warehouses, JSON results")
    p.add_argument("--top", type=int, default=12, help="how many of the slowest models and tests to print")
    args = p.parse_args()

    if args.child:
        if args.child == "floor":
            res = child_floor(args.root, args.note_root)
        elif args.child == "load":
            res = child_load(args.root, args.note_root, args.db)
        else:
            res = child_build(args.root, args.note_root, args.db)
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return

    demo = Path(os.environ.get("MIMIC_ROOT", REPO.parent / "shared/data/mimic-iv-demo"))
    demo_notes = Path(os.environ.get("MIMIC_NOTE_ROOT", REPO / "data/demo-note/note"))
    if not (demo_notes / "discharge.csv.gz").exists():
        from ehrforge.demo_data import build_demo_notes

        build_demo_notes(demo, REPO.parent / "shared/data/pmc-patients-sample/pmc_patients_sample.csv", demo_notes)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    print(f"{'N':>3} {'input rows':>12} {'floor s':>8} {'load s':>7} {'build s':>8} {'build/floor':>11} "
          f"{'build/load':>10} {'rows/s':>10} {'floor RSS MB':>12} {'build RSS MB':>12}")
    for n in args.n:
        if n == 1:
            root, note_root = demo, demo_notes
        else:
            root = out / f"demo_x{n}"
            note_root = root / "note"
            if not (root / "icu" / "chartevents.csv.gz").exists():
                subprocess.run([sys.executable, str(REPO / "bench/scale_demo.py"), "--n", str(n), "--src", str(demo),
                                "--notes", str(demo_notes), "--out", str(root)], check=True)
        floor = measure("floor", root, note_root, out / "floor.duckdb")
        load = measure("load", root, note_root, out / "load.duckdb")
        (out / "load.duckdb").unlink(missing_ok=True)
        build = measure("build", root, note_root, out / f"bench_x{n}.duckdb")
        if not build["ok"]:
            raise SystemExit(f"dbt build failed at N={n}")
        ratio = build["wall_s"] / floor["wall_s"]
        print(f"{n:>3} {floor['rows']:>12,} {floor['wall_s']:>8.1f} {load['wall_s']:>7.1f} {build['wall_s']:>8.1f} "
              f"{ratio:>11.2f} {build['wall_s'] / load['wall_s']:>10.2f} "
              f"{floor['rows'] / build['wall_s']:>10,.0f} {floor['peak_rss_mb']:>12,.0f} {build['peak_rss_mb']:>12,.0f}",
              flush=True)
        record = {"n": n, "input_rows": floor["rows"], "floor": floor, "load": load, "build": build}
        (out / f"bench_warehouse_x{n}.json").write_text(json.dumps(record, indent=1))
        by_kind = {}
        for r in build["nodes"]:
            key = "staging" if r["node"].startswith("stg_") else ("tests" if "test" in r["kind"] else r["kind"])
            by_kind[key] = by_kind.get(key, 0.0) + r["s"]
        print(f"    disk {build['disk_mb']:,.0f} MB; node time by kind: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])))
        for r in build["nodes"][: args.top]:
            print(f"      {r['s']:>7.2f} s  {r['kind']:<9} {r['node']}")


if __name__ == "__main__":
    main()
