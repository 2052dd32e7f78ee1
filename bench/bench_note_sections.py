"""Cost of the note section parser (int_note_sections) as the number of notes grows, against another version of it.

    python bench/bench_note_sections.py                                   # N = 10,000 and 30,000 notes
    git show main:dbt_project/models/intermediate/notes/int_note_sections.sql > /tmp/main_sections.sql
    python bench/bench_note_sections.py --notes 30000 --baseline /tmp/main_sections.sql

Notes are synthetic, shaped like MIMIC-IV-Note discharge summaries (150 lines, a heading every 8th line, 10 header
spellings of the seed), so the figure is about the SQL, not about any real text. The model's Jinja refs are replaced
by in-memory tables (the notes, the seed note_section_headers) and the query runs in one DuckDB process, 2 threads.
Prints wall seconds, sections found and their total length per version, so a faster version that finds other
sections shows up.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "dbt_project" / "models" / "intermediate" / "notes" / "int_note_sections.sql"
SEED = ROOT / "dbt_project" / "seeds" / "note_section_headers.csv"
HEADINGS = ["Chief Complaint:", "History of Present Illness:", "Physical Exam:", "Pertinent Results:",
            "Brief Hospital Course:", "Discharge Medications:", "Discharge Diagnosis:", "Discharge Instructions:",
            "Allergies:", "Social History:"]


def run(sql_path: Path, n_notes: int, threads: int) -> tuple[float, int, int]:
    con = duckdb.connect()
    con.execute(f"set threads = {threads}")
    heads = "[" + ", ".join(f"'{h}'" for h in HEADINGS) + "]"
    con.execute(f"""
        create table notes as
        select 'n' || i as note_id,
               string_agg(case when j % 8 = 0 then {heads}[(j // 8) % {len(HEADINGS)} + 1]
                               else 'Clinical text on line ' || j || ' with a label: and a few more words.' end,
                          chr(10) order by j) as clean_text
        from range({n_notes}) r(i), range(150) s(j) group by i""")
    con.execute(f"create table note_section_headers as select * from read_csv('{SEED}', all_varchar = true)")
    sql = re.sub(r"^--.*$", "", sql_path.read_text(), flags=re.M)
    sql = sql.replace("{{ ref('int_notes__unioned') }}", "notes")
    sql = sql.replace("{{ ref('note_section_headers') }}", "note_section_headers")
    t0 = time.perf_counter()
    n, chars = con.execute(f"select count(*), sum(length(section_text)) from ({sql})").fetchone()
    wall = time.perf_counter() - t0
    con.close()
    return wall, int(n), int(chars or 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--notes", default="10000,30000", help="comma-separated note counts")
    p.add_argument("--baseline", type=Path, help="another int_note_sections.sql to time the same way")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    versions = [("current", MODEL)] + ([("baseline", args.baseline)] if args.baseline else [])
    print(f"{'notes':>8} {'version':>9} {'wall_s':>8} {'sections':>9} {'chars':>12}")
    for n in (int(x) for x in args.notes.split(",")):
        walls = {}
        for name, path in versions:
            wall, n_sec, chars = run(path, n, args.threads)
            walls[name] = wall
            print(f"{n:>8} {name:>9} {wall:>8.2f} {n_sec:>9} {chars:>12}")
        if len(walls) == 2:
            print(f"{n:>8} {'ratio':>9} {walls['baseline'] / walls['current']:>8.2f}x  (baseline / current)")


if __name__ == "__main__":
    main()
