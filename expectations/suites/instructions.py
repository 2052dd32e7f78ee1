"""Suite `instructions`: synthesis.instructions (one row per instruction example; written by `make synthesize`).

    python -m expectations.run --suite instructions

Skipped (reported 'not_present') while the table does not exist. Checks the contract training and
evaluation rely on: the columns, a non-empty prompt and answer, a split equal to the patient's split in
marts.dim_splits (anything else leaks), lineage that parses as JSON. Lengths only: no text enters GX.
"""

from __future__ import annotations

import great_expectations.expectations as gxe

from ehrforge import instructions
from expectations.config import Settings
from expectations.core import Frame, SuiteSpec, critical, metric_between, schema_frame, seeded_sample, warn

TABLE = "synthesis.instructions"
CONTRACT = {TABLE: {
    "instruction_id": "VARCHAR", "dataset": "VARCHAR", "task": "VARCHAR", "task_version": "VARCHAR",
    "split": "VARCHAR", "subject_id": "BIGINT", "hadm_id": "BIGINT", "context": "VARCHAR",
    "instruction": "VARCHAR", "answer": "VARCHAR", "answer_type": "VARCHAR", "lineage": "VARCHAR",
    "template_id": "VARCHAR", "run_id": "VARCHAR", "created_at": "TIMESTAMP", "code_version": "VARCHAR",
    "config_hash": "VARCHAR",
}}
# Provenance columns COMMON.md lists; a column written all-NULL from pandas gets DuckDB type "NULL", which
# later non-null writes cannot use, so a wrong type here is worth a warning.
ADVISORY = {TABLE: {"prompt_hash": "VARCHAR", "generator_model": "VARCHAR", "seed": "BIGINT"}}
ANSWER_TYPES = list(instructions.ANSWER_TYPES)
SPLITS = ["train", "val", "test"]


def build(settings: Settings) -> list[Frame]:
    profile_sql = f"""
        select 'instructions' as row_key, count(*) as n_rows,
               count(*) - count(distinct instruction_id) as n_duplicate_instruction_id,
               count(distinct run_id) as n_runs
        from {TABLE}
    """
    profile = [
        metric_between("n_rows", "rows_present", "critical", "synthesis wrote rows", min_value=1),
        metric_between("n_duplicate_instruction_id", "unique_instruction_id", "critical",
                       "instruction_id is the grain (re-runs replace, never duplicate)", max_value=0),
    ]
    cols = {c: c for c in ["instruction_id", "subject_id", "dataset", "task", "task_version", "split", "answer_type"]}
    cols.update({
        "instruction_chars": "length(trim(coalesce(instruction, '')))",
        "answer_chars": "length(trim(coalesce(answer, '')))",
        "prompt_chars": "length(trim(coalesce(context, ''))) + length(trim(coalesce(instruction, '')))",
        "lineage_ok": "coalesce(lineage is not null and json_valid(lineage) and json_type(lineage) = 'OBJECT', false)",
        # rows over public case reports have no patient: their split is the case report's (marts.dim_case_reports)
        "case_report_id": "case when subject_id is null and json_valid(lineage) "
                          "then json_extract_string(lineage, '$.case_report_id') end",
    })
    sample_sql = f"""
        with s as ({seeded_sample(TABLE, "instruction_id", cols, settings.sample_rows, settings.seed)})
        select s.instruction_id as row_key, s.* exclude (instruction_id, subject_id, case_report_id),
               coalesce(d.split, c.split, 'no patient split') as patient_split
        from s left join marts.dim_splits d on d.subject_id = s.subject_id
        left join marts.dim_case_reports c on c.case_report_id = s.case_report_id
        order by row_key
    """
    sample = [
        critical(gxe.ExpectColumnValuesToBeBetween(column="instruction_chars", min_value=1), "instruction_not_empty",
                 "every example has an instruction (the prompt)"),
        critical(gxe.ExpectColumnValuesToBeBetween(column="answer_chars", min_value=1), "answer_not_empty",
                 "every example has an answer to train on"),
        critical(gxe.ExpectColumnValuesToNotBeNull(column="split"), "split_present", "every example has a split"),
        critical(gxe.ExpectColumnValuesToBeInSet(column="split", value_set=SPLITS), "split_values",
                 "splits are train, val or test"),
        critical(gxe.ExpectColumnPairValuesToBeEqual(column_A="split", column_B="patient_split"),
                 "split_matches_patient",
                 "an example's split is its patient's split in marts.dim_splits, or for rows over public case reports the "
                 "case report's in marts.dim_case_reports (else train/test leak)"),
        critical(gxe.ExpectColumnValuesToBeInSet(column="lineage_ok", value_set=[True]), "lineage_present",
                 "every example carries its lineage as a JSON object (which marts/rows it came from)"),
        critical(gxe.ExpectColumnValuesToBeInSet(column="answer_type", value_set=ANSWER_TYPES), "answer_type_values",
                 "answer types the scorers know"),
        critical(gxe.ExpectColumnValuesToNotBeNull(column="task"), "task_present", "every example names its task"),
        critical(gxe.ExpectColumnValuesToNotBeNull(column="task_version"), "task_version_present",
                 "every example names its task version (scores of different versions never mix)"),
        warn(gxe.ExpectColumnValuesToNotBeNull(column="dataset"), "dataset_present", "every example names its dataset"),
        warn(gxe.ExpectColumnValuesToBeBetween(column="prompt_chars", max_value=200_000, mostly=0.99),
             "prompt_length", "prompts fit a long-context model (200k characters)"),
    ]
    return [
        schema_frame("instructions", CONTRACT, ADVISORY),
        Frame("instructions", "profile", TABLE, "aggregate", "rows and keys (exact)", profile_sql, profile),
        Frame("instructions", "sample", TABLE, "sample", f"{settings.sample_rows} seeded examples (lengths only)",
              sample_sql, sample),
    ]


SUITE = SuiteSpec("instructions", [TABLE], build, optional=True,
                  description="synthesis.instructions: schema, non-empty prompt/answer, split, lineage")
