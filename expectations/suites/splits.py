"""Suite `splits`: marts.dim_splits (one row per patient: train/val/test, hashed by subject_id).

    python -m expectations.run --suite splits

Split proportions must sit within a binomial tolerance of the configured fractions (dbt vars split_train,
split_val): floor 0.01 + 4 standard errors, so the 100-patient demo gets +-0.13 on val and full MIMIC-IV
(~300k patients) +-0.012.
"""

from __future__ import annotations

import great_expectations.expectations as gxe

from expectations.config import Settings
from expectations.core import Frame, SuiteSpec, critical, metric_between, schema_frame

TABLE = "marts.dim_splits"
CONTRACT = {TABLE: {"subject_id": "BIGINT", "split_bucket": "DOUBLE", "split": "VARCHAR", "split_seed": "INTEGER"}}
SPLITS = ["train", "val", "test"]


def build(settings: Settings) -> list[Frame]:
    target = {"train": settings.split_train, "val": settings.split_val,
              "test": round(1 - settings.split_train - settings.split_val, 6)}
    targets = " union all ".join(f"select '{k}' as split, {v} as target_frac" for k, v in target.items())
    by_split_sql = f"""
        with t as ({targets}),
        n as (select count(*) as n_total from {TABLE}),
        s as (select split, count(*) as n from {TABLE} group by split)
        select coalesce(s.split, t.split, 'NULL') as row_key, coalesce(s.split, t.split) as split,
               coalesce(s.n, 0) as n, coalesce(s.n, 0) / greatest(n.n_total, 1) as frac,
               t.target_frac,
               abs(coalesce(s.n, 0) / greatest(n.n_total, 1) - coalesce(t.target_frac, 0)) as abs_deviation,
               0.01 + 4 * sqrt(coalesce(t.target_frac, 0) * (1 - coalesce(t.target_frac, 0)) / greatest(n.n_total, 1))
                   as tolerance
        from s full outer join t using (split), n
        order by row_key
    """
    by_split = [
        critical(gxe.ExpectColumnValuesToBeInSet(column="split", value_set=SPLITS), "split_values",
                 "splits are train, val or test"),
        critical(gxe.ExpectColumnValuesToNotBeNull(column="split"), "split_not_null", "every patient has a split"),
        critical(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="tolerance", column_B="abs_deviation",
                                                             or_equal=True),
                 "split_proportions",
                 f"each split's share is within a binomial tolerance of its target {target}"),
    ] + [
        metric_between("n", f"split_present.{s}", "critical", f"the {s} split has patients", min_value=1, key=s)
        for s in SPLITS
    ]
    profile_sql = f"""
        select 'dim_splits' as row_key, count(*) as n_patients,
               (select count(*) from staging.stg_mimic_hosp__patients) as n_patients_source,
               count(*) - count(distinct subject_id) as n_duplicate_subject_id,
               count(distinct split_seed) as n_split_seeds,
               (select count(distinct a.subject_id) from marts.dim_admissions a
                 where a.subject_id not in (select subject_id from {TABLE})) as n_admitted_without_split
        from {TABLE}
    """
    profile = [
        critical(gxe.ExpectColumnPairValuesToBeEqual(column_A="n_patients", column_B="n_patients_source"),
                 "patients_vs_source", "one split row per staged patient"),
        metric_between("n_duplicate_subject_id", "unique_subject_id", "critical",
                       "a patient in two splits leaks between train and test", max_value=0),
        metric_between("n_split_seeds", "one_split_seed", "critical", "the split was made once, with one seed",
                       min_value=1, max_value=1),
        metric_between("n_admitted_without_split", "admitted_patients_have_split", "critical",
                       "every admitted patient has a split (downstream rows join to it)", max_value=0),
    ]
    return [
        schema_frame("splits", CONTRACT),
        Frame("splits", "by_split", TABLE, "aggregate", "patients per split vs target (exact)", by_split_sql, by_split),
        Frame("splits", "profile", TABLE, "aggregate", "patients vs source, keys, seed (exact)", profile_sql, profile),
    ]


SUITE = SuiteSpec("splits", [TABLE, "marts.dim_admissions"], build, description="patient-level splits")
