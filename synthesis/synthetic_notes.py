"""Synthetic discharge summaries written from public case reports (the case_report_note task) and read back by the
note tasks (note_qa, note_reasoning_qa with `note_source: synthetic`).

    from synthesis.synthetic_notes import split_sections, longest_common_ngram, synthetic_notes_for

Kept apart from the task files so that the writer and the readers agree on the table, its section headings and its
provenance without importing each other.
"""

from __future__ import annotations

import re

from ehrforge import provenance, warehouse
from ehrforge.errors import InputDataError
from synthesis import SYNTHETIC_NOTES_TABLE
# MIMIC-IV-Note discharge summary headings, in the order the generator is asked to write them
NOTE_SECTIONS = {"chief_complaint": "Chief Complaint", "history_of_present_illness": "History of Present Illness",
                 "past_medical_history": "Past Medical History", "brief_hospital_course": "Brief Hospital Course",
                 "discharge_diagnosis": "Discharge Diagnosis", "discharge_medications": "Discharge Medications",
                 "discharge_instructions": "Discharge Instructions"}
_HEADING = re.compile(r"^[ \t#*]*(" + "|".join(re.escape(t) for t in NOTE_SECTIONS.values()) + r")[ \t*]*:[ \t*]*",
                      re.I | re.M)
_TOKEN = re.compile(r"\w+")


def split_sections(text: str) -> dict[str, str]:
    """Section key -> its text, for every known heading at the start of a line ("Brief Hospital Course: ...").
    A heading that appears twice keeps its first occurrence."""
    by_title = {t.lower(): k for k, t in NOTE_SECTIONS.items()}
    hits = list(_HEADING.finditer(text or ""))
    out: dict[str, str] = {}
    for i, m in enumerate(hits):
        key = by_title[m.group(1).lower()]
        end = hits[i + 1].start() if i + 1 < len(hits) else len(text)
        if key not in out:
            out[key] = text[m.end():end].strip()
    return out


def tokens(text: str) -> list[str]:
    return _TOKEN.findall((text or "").lower())


def longest_common_ngram(a: str, b: str) -> int:
    """Length in word tokens of the longest run of consecutive tokens that `a` and `b` share (lower-cased,
    punctuation ignored): how much of the case report a note copies verbatim. Binary search over n with hashed
    n-gram sets, O((|a| + |b|) log |a|)."""
    ta, tb = tokens(a), tokens(b)

    def shares(n: int) -> bool:
        grams = {tuple(tb[i:i + n]) for i in range(len(tb) - n + 1)}
        return any(tuple(ta[i:i + n]) in grams for i in range(len(ta) - n + 1))

    lo, hi = 0, min(len(ta), len(tb))
    while lo < hi:  # largest n with shares(n); shares is monotone (a shared n-gram holds a shared (n-1)-gram)
        mid = (lo + hi + 1) // 2
        if shares(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def synthetic_notes_for(ctx, dataset: str) -> list[dict]:
    """The synthetic notes of `dataset`: written in this run (ctx.extra_tables) if the case_report_note task ran,
    else read from the warehouse. Each: synthetic_note_id, case_report_id, split, note_text, provenance."""
    rows = ctx.extra_tables.get(SYNTHETIC_NOTES_TABLE)
    if rows and any(r["dataset"] == dataset for r in rows):
        return [r for r in rows if r["dataset"] == dataset]
    if not warehouse.table_exists(ctx.con, SYNTHETIC_NOTES_TABLE):
        return []
    df = ctx.con.execute(f"select * from {SYNTHETIC_NOTES_TABLE} where dataset = ? order by synthetic_note_id",
                         [dataset]).df()
    out = df.to_dict("records")
    bad = [r["synthetic_note_id"] for r in out if r["provenance"] != provenance.PUBLIC]
    if bad:  # the table is declared public; a row that says otherwise means the table was written by hand
        raise InputDataError(f"{SYNTHETIC_NOTES_TABLE}: {len(bad)} row(s) of dataset {dataset!r} are not public "
                             f"(e.g. {bad[0]}); only the case_report_note task may write this table: re-run it")
    return out
