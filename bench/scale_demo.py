"""Make an N-times copy of the MIMIC-IV demo with remapped ids, in the same files and layout.

    python bench/scale_demo.py --n 20 --out bench/out/demo_x20      # reads $MIMIC_ROOT (default ../shared demo)

Only the tables the dbt project declares as sources are copied (the rest of the release is never read). Each
file is written under a temporary name and renamed when complete, so an interrupted run leaves no file that a
re-run (which skips finished files) would take for complete.

Copy k (0..N-1) adds k * 100,000,000 to subject/admission/stay ids and k * 1,000,000,000 to row ids, and
suffixes string ids (emar_id, poe_id, note_id) with `-k`, so every copy is a distinct set of patients with the
same clinical content. Dictionary tables (d_*, provider, caregiver) are linked once. Copy 0 equals the input.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import duckdb

PATIENT_IDS = {"subject_id", "hadm_id", "stay_id"}
ROW_IDS = {"labevent_id", "microevent_id", "transfer_id", "pharmacy_id", "orderid", "linkorderid", "specimen_id",
           "micro_specimen_id"}
STRING_IDS = {"emar_id", "poe_id", "note_id"}
CSV = "header = true, all_varchar = true, delim = ',', quote = '\"', escape = '\"'"


def scale_table(con, src: Path, dst: Path, n: int) -> int:
    cols = [r[0] for r in con.execute(f"describe select * from read_csv('{src}', {CSV})").fetchall()]
    if "subject_id" not in {c.lower() for c in cols}:
        dst.symlink_to(src)
        return 0
    exprs = []
    for c in cols:
        lc = c.lower()
        if lc in PATIENT_IDS:
            exprs.append(f'cast(cast("{c}" as bigint) + k * 100000000 as varchar) as "{c}"')
        elif lc in ROW_IDS:
            exprs.append(f'cast(cast("{c}" as bigint) + k * 1000000000 as varchar) as "{c}"')
        elif lc in STRING_IDS:
            exprs.append(f'case when k = 0 then "{c}" else "{c}" || \'-\' || k end as "{c}"')
        else:
            exprs.append(f'"{c}"')
    tmp = dst.with_name(dst.name.removesuffix(".csv.gz") + ".partial.csv.gz")  # the build reads <table>.csv.gz only
    con.execute(
        f"copy (select {', '.join(exprs)} from read_csv('{src}', {CSV}), range({n}) t(k)) "
        f"to '{tmp}' (header, compression gzip)"
    )
    rows = con.execute(f"select count(*) from read_csv('{tmp}', {CSV})").fetchall()[0][0]
    tmp.rename(dst)
    return rows


def _declared_tables() -> set[tuple[str, str]]:
    """(module, table) of every raw source the dbt project reads."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ehrforge.build import source_tables

    return {(module, table) for module, table, _cols, _opt in source_tables()}


def scale_demo(src_root: Path, out: Path, n: int) -> Path:
    con = duckdb.connect()
    declared = _declared_tables()
    for module in ("hosp", "icu", "note"):
        if not (src_root / module).is_dir():
            continue
        (out / module).mkdir(parents=True, exist_ok=True)
        for src in sorted((src_root / module).glob("*.csv.gz")):
            if (module, src.name.removesuffix(".csv.gz")) not in declared:
                continue
            dst = out / module / src.name
            if dst.exists() or dst.is_symlink():
                continue
            t = time.perf_counter()
            rows = scale_table(con, src.resolve(), dst, n)
            print(f"  {module}/{src.name}: {rows or 'linked'} ({time.perf_counter() - t:.1f} s)")
    return out


def main() -> None:
    default_root = os.environ.get("MIMIC_ROOT", str(Path(__file__).resolve().parents[2] / "shared/data/mimic-iv-demo"))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--src", type=Path, default=Path(default_root))
    p.add_argument("--notes", type=Path, default=None, help="a note/ folder to scale too (e.g. data/demo-note/note)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    scale_demo(args.src, args.out, args.n)
    if args.notes:
        tmp = args.out / "_notes_src"
        tmp.mkdir(parents=True, exist_ok=True)
        if not (tmp / "note").exists():
            (tmp / "note").symlink_to(args.notes.resolve())
        scale_demo(tmp, args.out, args.n)


if __name__ == "__main__":
    main()
