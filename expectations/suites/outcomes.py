"""Suite `outcomes`: marts.fct_outcomes (one row per prediction-task instance).

    python -m expectations.run --suite outcomes

Prevalence bounds are what MIMIC-IV cohorts report (e.g. in-hospital mortality 2-15 %, 30-day readmission
~10-25 %, LOS > 3 d about half, ICU mortality ~10 %), widened for small cohorts; outside them is a warning.
A task whose labels are all 0 or all 1 is critical: it cannot train or evaluate anything.
"""

from __future__ import annotations

import great_expectations.expectations as gxe

from expectations.config import Settings
from expectations.core import Frame, SuiteSpec, critical, metric_between, schema_frame, seeded_sample

TABLE = "marts.fct_outcomes"
CONTRACT = {TABLE: {"outcome_id": "VARCHAR", "task": "VARCHAR", "subject_id": "BIGINT", "hadm_id": "BIGINT",
                    "stay_id": "BIGINT", "prediction_time": "TIMESTAMP", "outcome_time": "TIMESTAMP",
                    "label": "BOOLEAN", "label_int": "INTEGER"}}

# task -> plausible prevalence [low, high]
PREVALENCE = {
    "in_hospital_mortality": (0.005, 0.3),
    "los_gt_3d": (0.2, 0.9),
    "los_gt_7d": (0.05, 0.6),
    "readmission_30d": (0.02, 0.4),
    "icu_mortality": (0.01, 0.4),
}


def build(settings: Settings) -> list[Frame]:
    by_task_sql = f"""
        select task as row_key, task, count(*) as n, avg(label_int) as prevalence,
               count(*) filter (where label is null) as n_null_label
        from {TABLE} group by task order by task
    """
    by_task = [
        critical(gxe.ExpectColumnValuesToBeInSet(column="task", value_set=sorted(PREVALENCE)), "task_values",
                 "outcome tasks are the ones synthesis and evaluation know"),
        critical(gxe.ExpectColumnDistinctValuesToContainSet(column="task", value_set=sorted(PREVALENCE)),
                 "tasks_present", "every outcome task has instances"),
        critical(gxe.ExpectColumnValuesToBeBetween(column="prevalence", min_value=0, max_value=1, strict_min=True,
                                                   strict_max=True),
                 "labels_not_degenerate", "each task has both positive and negative labels"),
        critical(gxe.ExpectColumnValuesToBeBetween(column="n_null_label", max_value=0), "labels_not_null",
                 "every instance has a label"),
    ] + [
        metric_between("prevalence", f"prevalence.{task}", "warn",
                       f"{task} prevalence within the plausible range [{lo}, {hi}]", min_value=lo, max_value=hi,
                       key=task)
        for task, (lo, hi) in PREVALENCE.items()
    ]
    profile_sql = f"""
        select 'fct_outcomes' as row_key, count(*) as n_rows,
               count(*) - count(distinct outcome_id) as n_duplicate_outcome_id,
               count(*) filter (where hadm_id not in (select hadm_id from marts.dim_admissions))
                   as n_without_admission
        from {TABLE}
    """
    profile = [
        metric_between("n_rows", "rows_present", "critical", "outcomes exist", min_value=1),
        metric_between("n_duplicate_outcome_id", "unique_outcome_id", "critical", "outcome_id is the grain",
                       max_value=0),
        metric_between("n_without_admission", "outcomes_have_admission", "critical",
                       "every instance belongs to an admission of dim_admissions", max_value=0),
    ]
    sample_sql = f"""
        with s as ({seeded_sample(TABLE, "outcome_id", {c: c for c in CONTRACT[TABLE]}, settings.sample_rows,
                                  settings.seed)})
        select s.outcome_id as row_key, s.task, s.prediction_time, s.outcome_time, s.label_int,
               date_diff('second', a.dischtime, s.prediction_time) / 3600.0 as hours_prediction_after_discharge
        from s left join marts.dim_admissions a using (hadm_id)
        order by row_key
    """
    sample = [
        critical(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="outcome_time", column_B="prediction_time"),
                 "outcome_after_prediction",
                 "the outcome is known only after the prediction time (else the label leaks into the input)"),
        critical(gxe.ExpectColumnValuesToBeInSet(column="label_int", value_set=[0, 1]), "label_int_values",
                 "label_int is 0 or 1"),
        critical(gxe.ExpectColumnValuesToBeBetween(column="hours_prediction_after_discharge", max_value=0),
                 "prediction_not_after_discharge", "predictions are made at or before discharge"),
    ]
    return [
        schema_frame("outcomes", CONTRACT),
        Frame("outcomes", "by_task", TABLE, "aggregate", "instances and prevalence per task (exact)", by_task_sql,
              by_task),
        Frame("outcomes", "profile", TABLE, "aggregate", "rows, keys (exact)", profile_sql, profile),
        Frame("outcomes", "sample", TABLE, "sample", f"{settings.sample_rows} seeded instances", sample_sql, sample),
    ]


SUITE = SuiteSpec("outcomes", [TABLE, "marts.dim_admissions"], build, description="prediction tasks and labels")
