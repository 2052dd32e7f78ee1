"""Synthesis speed: rows/s of the deterministic tasks on the demo and on the 20x scaled demo; calls/s of the LLM
tasks and the speed-up of a cached re-run.

    python bench/bench_synthesis.py                       # = make bench-synthesis; N = 1 and 20
    python bench/bench_synthesis.py --n 1 --skip-llm      # demo only

The 20x warehouse is bench/out/bench_x20.duckdb (made by bench/bench_warehouse.py: scale_demo.py + dbt build);
if absent it is built here the same way. Each warehouse is copied to a temp file first (DuckDB locks). Quotas scale
with N so that the row counts, and rows/s, are comparable; the baseline for the ratio is the N = 1 run in the same
process. LLM figures use the tiny random model through ehrforge.llm (in-process transformers backend, CPU).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DET_TASKS = {"template_qa": 240, "risk_prediction": 100, "decision_making": 60, "note_generation": 60}


def _x20_warehouse(out: Path) -> Path:
    path = out / "bench_x20.duckdb"
    if path.exists():
        return path
    src = out / "demo_x20"
    if not (src / "hosp").is_dir():
        subprocess.run([sys.executable, str(REPO / "bench" / "scale_demo.py"), "--n", "20", "--out", str(src)],
                       check=True)
    env = dict(os.environ, MIMIC_ROOT=str(src), MIMIC_NOTE_ROOT=str(src / "note"), EHRFORGE_DUCKDB=str(path),
               EHRFORGE_CHECK_DEMO_COUNTS="false")
    subprocess.run([sys.executable, "-m", "ehrforge.build"], check=True, env=env, cwd=REPO)
    return path


def run_deterministic(src: Path, n: int, tmp: Path) -> dict:
    import duckdb

    from synthesis.cli import synthesize
    from synthesis.config import load_synthesis_config

    db = tmp / f"w{n}.duckdb"
    shutil.copy(src, db)
    # no generator (no LLM, no tiny-model tokenizer): the context budget is the chars/4 estimate
    overrides = ["progress=false", "export=false", "generator=null", "render.tokenizer=null", f"dataset=bench_x{n}"]
    for task in ("note_qa", "note_reasoning_qa", "question_paraphrase"):
        overrides.append(f"tasks.{task}.enabled=false")
    for task, q in DET_TASKS.items():
        overrides.append(f"tasks.{task}.quota={q * n}")
    overrides.append("tasks.note_generation.generate_n=0")
    cfg = load_synthesis_config(REPO / "synthesis/configs/demo.yaml", overrides)
    con = duckdb.connect(str(db))
    try:
        t0 = time.perf_counter()
        res = synthesize(cfg, con=con)
        wall = time.perf_counter() - t0
        n_adm = con.execute("select count(*) from marts.dim_admissions where is_llemr_cohort").fetchone()[0]
    finally:
        con.close()
    counts = res["counts"]["total"].to_dict()
    per_task = {t: (counts.get(t, 0), res["timings"][t]) for t in DET_TASKS}
    return {"n": n, "wall_s": wall, "rows": res["n_rows"], "admissions": n_adm, "per_task": per_task}


def run_llm(src: Path, tmp: Path) -> dict:
    import duckdb

    from synthesis.cli import synthesize
    from synthesis.config import load_synthesis_config

    db = tmp / "bench_llm_w.duckdb"  # not llm.duckdb: the catalog name would clash with schema llm
    shutil.copy(src, db)
    overrides = ["progress=false", "export=false", "dataset=bench_llm", f"generator.llm.model={tmp}/tiny-llama",
                 "tasks.risk_prediction.enabled=false", "tasks.decision_making.enabled=false",
                 "tasks.note_generation.enabled=false", "tasks.template_qa.quota=40",
                 "tasks.note_qa.quota=16", "tasks.note_reasoning_qa.quota=8", "tasks.question_paraphrase.quota=16"]
    cfg = load_synthesis_config(REPO / "synthesis/configs/demo.yaml", overrides)
    con = duckdb.connect(str(db))
    try:
        from ehrforge.tiny_model import build_tiny_model, warehouse_texts

        build_tiny_model(tmp / "tiny-llama", warehouse_texts(con))  # outside the timed runs
        out = []
        for label in ("first run", "cached re-run"):
            t0 = time.perf_counter()
            res = synthesize(cfg, con=con)
            wall = time.perf_counter() - t0
            st = res["stats"]
            calls = sum(s.get("llm_calls", 0) for s in st.values())
            cached = sum(s.get("llm_cached", 0) for s in st.values())
            llm_s = sum(s.get("llm_wall_s", 0.0) for s in st.values())
            out.append({"label": label, "wall_s": wall, "calls": calls, "cached": cached, "llm_s": llm_s})
    finally:
        con.close()
    return {"runs": out}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="*", default=[1, 20])
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    p.add_argument("--demo-warehouse", type=Path, default=None,
                   help="N=1 warehouse (default: bench/out/bench_x1.duckdb, else $EHRFORGE_DUCKDB)")
    p.add_argument("--skip-llm", action="store_true")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    demo = args.demo_warehouse or (args.out / "bench_x1.duckdb")
    if not demo.exists():
        from ehrforge.paths import warehouse_path

        demo = warehouse_path()
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        tmp = Path(tmp)
        results = []
        for n in args.n:
            src = demo if n == 1 else _x20_warehouse(args.out) if n == 20 else None
            if src is None:
                raise SystemExit("only N = 1 and 20 are prepared (bench/bench_warehouse.py builds bench_x20)")
            results.append(run_deterministic(src, n, tmp))
        print("\ndeterministic tasks (build + render + write, one process, 2 shared cores)")
        print(f"{'N':>3} {'admissions':>10} {'rows':>7} {'wall s':>8} {'rows/s':>8}   per task rows/s")
        base = None
        for r in results:
            rps = r["rows"] / r["wall_s"]
            base = base or rps
            per = ", ".join(f"{t} {rows / s:.0f}" for t, (rows, s) in r["per_task"].items() if s)
            print(f"{r['n']:>3} {r['admissions']:>10} {r['rows']:>7} {r['wall_s']:>8.1f} {rps:>8.1f}   {per}"
                  f"   (x{rps / base:.2f} of N=1)")
        if not args.skip_llm:
            llm = run_llm(demo, tmp)
            print("\nLLM tasks (note_qa, note_reasoning_qa, question_paraphrase; tiny model, transformers on CPU)")
            first = llm["runs"][0]
            for r in llm["runs"]:
                cps = r["calls"] / r["llm_s"] if r["llm_s"] and r["calls"] else 0.0
                print(f"  {r['label']:14s} wall {r['wall_s']:6.1f}s  calls {r['calls']:3d}  cached {r['cached']:3d}  "
                      f"llm time {r['llm_s']:6.1f}s  calls/s {cps:5.2f}  speed-up x{first['wall_s'] / r['wall_s']:.1f}")


if __name__ == "__main__":
    main()
