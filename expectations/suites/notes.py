"""Suite `notes`: marts.fct_notes (one row per note) and marts.fct_note_sections (one row per note x section).

    python -m expectations.run --suite notes

Note text never enters GX: the frames carry lengths (characters after trimming), so Data Docs and
dq.expectation_results hold no clinical text.

Reported besides: parse coverage per note type (share of notes whose main sections were found,
fct_notes.has_main_sections) and note text shared by patients of different splits
(fct_notes.is_text_shared_across_splits: such notes are left out of the note tasks, but their number says how
much copied text the source holds).
"""

from __future__ import annotations

import great_expectations.expectations as gxe

from expectations.config import Settings
from expectations.core import (Frame, SuiteSpec, critical, hours_outside, metric_between, null_rates, schema_frame,
                               seeded_sample, warn, where)

NOTES, SECTIONS = "marts.fct_notes", "marts.fct_note_sections"
CONTRACT = {
    NOTES: {"note_id": "VARCHAR", "subject_id": "BIGINT", "hadm_id": "BIGINT", "note_type": "VARCHAR",
            "note_seq": "INTEGER", "charttime": "TIMESTAMP", "chief_complaint": "VARCHAR",
            "history_of_present_illness": "VARCHAR", "brief_hospital_course": "VARCHAR",
            "discharge_diagnosis": "VARCHAR", "assessment_and_plan": "VARCHAR", "has_main_sections": "BOOLEAN",
            "is_text_shared_across_splits": "BOOLEAN", "n_sections": "BIGINT", "n_chars": "BIGINT", "n_words": "BIGINT",
            "clean_text": "VARCHAR", "text": "VARCHAR"},
    SECTIONS: {"note_section_id": "VARCHAR", "note_id": "VARCHAR", "section": "VARCHAR", "section_order": "BIGINT",
               "section_text": "VARCHAR", "n_chars": "BIGINT"},
}
NOTE_TYPES = ["discharge", "radiology"]


def build(settings: Settings) -> list[Frame]:
    profile_sql = f"""
        with n as (
            select count(*) as n_notes, count(*) - count(distinct note_id) as n_duplicate_note_id,
                   count(*) filter (where note_type = 'discharge') as n_discharge_notes,
                   1.0 * count(*) filter (where text is null or trim(text) = '') / greatest(count(*), 1)
                       as frac_empty_text,
                   1.0 * count(*) filter (where clean_text is null or trim(clean_text) = '') / greatest(count(*), 1)
                       as frac_empty_clean_text,
                   avg(case when has_main_sections then 1.0 else 0.0 end) as parse_coverage,
                   coalesce(avg(case when has_main_sections then 1.0 else 0.0 end)
                            filter (where note_type = 'discharge'), 1.0) as parse_coverage_discharge,
                   coalesce(avg(case when has_main_sections then 1.0 else 0.0 end)
                            filter (where note_type = 'radiology'), 1.0) as parse_coverage_radiology,
                   count(*) filter (where is_text_shared_across_splits) as n_notes_text_shared_across_splits,
                   count(distinct text_md5) filter (where is_text_shared_across_splits)
                       as n_texts_shared_across_splits,
                   {null_rates(["note_id", "subject_id", "note_type", "charttime"])}
            from {NOTES}
        ),
        s as (
            select count(*) as n_sections_rows,
                   1.0 * count(*) filter (where section_text is null or trim(section_text) = '')
                       / greatest(count(*), 1) as frac_empty_sections,
                   count(*) filter (where note_id not in (select note_id from {NOTES})) as n_orphan_sections
            from {SECTIONS}
        )
        select 'notes' as row_key, n.*, s.*,
               (select count(*) from staging.stg_mimic_note__discharge)
             + (select count(*) from staging.stg_mimic_note__radiology) as n_notes_source,
               n.n_notes / greatest((select count(*) from staging.stg_mimic_note__discharge)
                                  + (select count(*) from staging.stg_mimic_note__radiology), 1)
                   as notes_per_source_row,
               (select count(*) from marts.dim_admissions) as n_admissions
        from n, s
    """
    profile = [
        metric_between("n_notes", "notes_present", "critical", "a note mart with no rows means a failed load",
                       min_value=1),
        metric_between("notes_per_source_row", "notes_rows_vs_source", "critical",
                       "fct_notes keeps the staged discharge and radiology notes (duplicates or losses fail)",
                       min_value=0.95, max_value=1.0),
        metric_between("n_duplicate_note_id", "unique_note_id", "critical", "note_id is the grain", max_value=0),
        metric_between("frac_empty_text", "empty_text_share", "critical",
                       "notes have text: a table of empty strings trains on nothing", max_value=0.01),
        metric_between("frac_empty_clean_text", "empty_clean_text_share", "critical",
                       "cleaning leaves text in every note", max_value=0.01),
        metric_between("frac_empty_sections", "empty_sections_share", "warn",
                       "extracted sections carry text", max_value=0.05),
        metric_between("n_orphan_sections", "sections_have_note", "critical",
                       "every section belongs to a note of fct_notes", max_value=0),
        metric_between("n_sections_rows", "sections_present", "warn",
                       "section extraction found sections", min_value=1),
        metric_between("parse_coverage", "parse_coverage", "warn",
                       "parse coverage: at least 90% of the notes have their main sections found (discharge: history "
                       "of present illness and brief hospital course or assessment and plan; radiology: findings or "
                       "impression); below means a heading style the header vocabulary (note_section_headers) misses",
                       min_value=0.9),
    ] + [
        metric_between(f"parse_coverage_{t}", f"parse_coverage.{t}", "warn",
                       f"parse coverage of {t} notes at least 90% (1.0 when there are none)", min_value=0.9)
        for t in NOTE_TYPES
    ] + [
        metric_between("n_notes_text_shared_across_splits", "note_text_shared_across_splits", "warn",
                       "no exact note text belongs to patients of two splits (such notes are left out of note "
                       "tasks; n_texts_shared_across_splits counts the distinct texts)", max_value=0),
    ] + [
        metric_between(f"null_rate__{c}", f"null_rate.{c}", "critical", f"{c} is never null", max_value=0)
        for c in ["note_id", "subject_id", "note_type"]
    ] + [
        metric_between("null_rate__charttime", "null_rate.charttime", "warn", "notes carry a chart time",
                       max_value=0.01),
        critical(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="n_admissions", column_B="n_discharge_notes",
                                                             or_equal=True),
                 "discharge_notes_le_admissions",
                 "at most one discharge note per admission on average (more means duplicated notes)"),
    ]
    note_cols = {c: c for c in ["note_id", "note_type", "hadm_id", "charttime", "n_sections"]}
    note_cols["text_chars"] = "length(trim(coalesce(text, '')))"
    note_cols["clean_text_chars"] = "length(trim(coalesce(clean_text, '')))"
    sample_sql = f"""
        with s as ({seeded_sample(NOTES, "note_id", note_cols, settings.sample_rows, settings.seed)})
        select s.note_id as row_key, s.* exclude (note_id, charttime, hadm_id),
               case when a.hadm_id is not null then
                   {hours_outside("s.charttime", "a.admittime", "a.dischtime")} end as hours_outside_window
        from s left join marts.dim_admissions a on a.hadm_id = s.hadm_id
        order by row_key
    """
    sample = [
        critical(gxe.ExpectColumnValuesToBeBetween(column="text_chars", min_value=1, mostly=0.99),
                 "note_text_not_empty", "a note has text"),
        warn(gxe.ExpectColumnValuesToBeBetween(column="text_chars", min_value=100, max_value=200_000, mostly=0.95),
             "note_length_range", "notes are 100 to 200k characters long"),
        critical(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="text_chars", column_B="clean_text_chars",
                                                             or_equal=True, mostly=0.99),
                 "clean_text_not_longer", "cleaning removes text, it does not add any"),
        warn(gxe.ExpectColumnValuesToBeBetween(column="n_sections", min_value=1, mostly=0.9),
             "notes_have_sections", "section extraction finds at least one section in most notes"),
        warn(gxe.ExpectColumnValuesToBeBetween(column="hours_outside_window", min_value=0,
                                               max_value=settings.window_hours, mostly=0.95),
             "note_time_in_admission_window",
             f"a note of an admission is charted within {settings.window_hours:g} h of the admission window"),
    ]
    by_type_sql = f"""
        select note_type as row_key, note_type, count(*) as n,
               median(length(trim(coalesce(text, '')))) as median_chars
        from {NOTES} group by note_type order by note_type
    """
    by_type = [
        critical(gxe.ExpectColumnValuesToBeInSet(column="note_type", value_set=NOTE_TYPES), "note_type_values",
                 "notes are discharge summaries or radiology reports"),
        warn(gxe.ExpectColumnValuesToBeBetween(column="median_chars", min_value=1_000, max_value=50_000,
                                               **where("note_type", "discharge")),
             "discharge_note_median_length", "a discharge summary is typically a few thousand characters"),
        warn(gxe.ExpectColumnValuesToBeBetween(column="median_chars", min_value=100, max_value=20_000,
                                               **where("note_type", "radiology")),
             "radiology_note_median_length", "a radiology report is typically hundreds to a few thousand characters"),
    ]
    return [
        schema_frame("notes", CONTRACT),
        Frame("notes", "by_type", NOTES, "aggregate", "notes and median length per note type (exact)", by_type_sql,
              by_type),
        Frame("notes", "profile", f"{NOTES}, {SECTIONS}", "aggregate", "notes vs source, keys, empty text (exact)",
              profile_sql, profile),
        Frame("notes", "sample", NOTES, "sample", f"{settings.sample_rows} seeded notes (lengths only)", sample_sql,
              sample),
    ]


SUITE = SuiteSpec("notes", [NOTES, SECTIONS, "marts.dim_admissions"], build,
                  description="notes: counts vs source, empty text, lengths, time windows, parse coverage, "
                              "text shared across splits")
