"""Suite `cohort`: marts.dim_admissions (one row per admission) and marts.dim_icustays (one row per ICU stay).

    python -m expectations.run --suite cohort
"""

from __future__ import annotations

import great_expectations.expectations as gxe

from expectations.config import Settings
from expectations.core import (Frame, SuiteSpec, critical, hours_outside, metric_between, null_rates, schema_frame,
                               seeded_sample, warn)

ADM, ICU = "marts.dim_admissions", "marts.dim_icustays"

CONTRACT = {
    ADM: {"hadm_id": "BIGINT", "subject_id": "BIGINT", "admission_seq": "BIGINT", "gender": "VARCHAR",
          "age_at_admission": "BIGINT", "race": "VARCHAR", "admission_type": "VARCHAR", "insurance": "VARCHAR",
          "admittime": "TIMESTAMP", "dischtime": "TIMESTAMP", "deathtime": "TIMESTAMP", "los_days": "DOUBLE",
          "n_icu_stays": "BIGINT", "first_icu_intime": "TIMESTAMP", "is_in_hospital_death": "BOOLEAN",
          "next_hadm_id": "BIGINT", "next_admittime": "TIMESTAMP", "days_to_next_admission": "DOUBLE",
          "n_discharge_notes": "BIGINT", "is_readmitted_30d": "BOOLEAN", "has_icu_stay": "BOOLEAN",
          "has_discharge_note": "BOOLEAN", "is_adult": "BOOLEAN", "is_all_admissions_cohort": "BOOLEAN",
          "is_llemr_cohort": "BOOLEAN"},
    ICU: {"stay_id": "BIGINT", "hadm_id": "BIGINT", "subject_id": "BIGINT", "first_careunit": "VARCHAR",
          "intime": "TIMESTAMP", "outtime": "TIMESTAMP", "los_days": "DOUBLE", "is_icu_death": "BOOLEAN",
          "icu_stay_seq": "BIGINT"},
}

ADMISSION_TYPES = ["AMBULATORY OBSERVATION", "DIRECT EMER.", "DIRECT OBSERVATION", "ELECTIVE", "EU OBSERVATION",
                   "EW EMER.", "OBSERVATION ADMIT", "SURGICAL SAME DAY ADMISSION", "URGENT"]


def build(settings: Settings) -> list[Frame]:
    profile_sql = f"""
        with a as (
            select count(*) as n_admissions, count(*) - count(distinct hadm_id) as n_duplicate_hadm_id,
                   count(*) filter (where is_llemr_cohort) as n_llemr_cohort,
                   1.0 * count(*) filter (where is_llemr_cohort) / greatest(count(*), 1) as frac_llemr_cohort,
                   1.0 * count(*) filter (where is_all_admissions_cohort) / greatest(count(*), 1)
                       as frac_all_admissions_cohort,
                   {null_rates(["subject_id", "admittime", "dischtime", "gender", "age_at_admission",
                                "is_llemr_cohort"])}
            from {ADM}
        ),
        i as (select count(*) as n_icustays, count(*) - count(distinct stay_id) as n_duplicate_stay_id,
                     count(*) filter (where hadm_id not in (select hadm_id from {ADM})) as n_icustays_orphan
              from {ICU})
        select 'cohort' as row_key, a.*, i.*,
               (select count(*) from staging.stg_mimic_hosp__admissions) as n_admissions_source,
               (select count(*) from staging.stg_mimic_icu__icustays) as n_icustays_source
        from a, i
    """
    profile = [
        critical(gxe.ExpectColumnPairValuesToBeEqual(column_A="n_admissions", column_B="n_admissions_source"),
                 "admissions_rows_vs_source", "dim_admissions has exactly one row per staged admission"),
        critical(gxe.ExpectColumnPairValuesToBeEqual(column_A="n_icustays", column_B="n_icustays_source"),
                 "icustays_rows_vs_source", "dim_icustays has exactly one row per staged ICU stay"),
        metric_between("n_admissions", "admissions_present", "critical",
                       "an empty cohort means the build or download failed", min_value=1),
        metric_between("n_duplicate_hadm_id", "unique_hadm_id", "critical", "hadm_id is the grain", max_value=0),
        metric_between("n_duplicate_stay_id", "unique_stay_id", "critical", "stay_id is the grain", max_value=0),
        metric_between("n_icustays_orphan", "icustays_have_admission", "critical",
                       "every ICU stay belongs to an admission of dim_admissions", max_value=0),
        metric_between("n_llemr_cohort", "llemr_cohort_present", "critical",
                       "the LLemr cohort (adult ICU admissions with one stay and a discharge note) is not empty",
                       min_value=1),
        metric_between("frac_llemr_cohort", "llemr_cohort_share", "warn",
                       "the LLemr cohort is a plausible share of admissions", min_value=0.02, max_value=0.9),
        metric_between("frac_all_admissions_cohort", "all_admissions_cohort_share", "warn",
                       "most admissions are adult admissions", min_value=0.5, max_value=1.0),
    ] + [
        metric_between(f"null_rate__{c}", f"null_rate.{c}", "critical", f"{c} is never null", max_value=0)
        for c in ["subject_id", "admittime", "dischtime", "is_llemr_cohort"]
    ] + [
        metric_between(f"null_rate__{c}", f"null_rate.{c}", "warn", f"{c} is almost always known", max_value=0.01)
        for c in ["gender", "age_at_admission"]
    ]

    adm_cols = {c: c for c in ["hadm_id", "age_at_admission", "los_days", "gender", "admission_type", "admittime",
                               "dischtime"]}
    adm_cols["icu_hours_outside_window"] = hours_outside("first_icu_intime", "admittime", "dischtime")
    sample_sql = f"""
        select hadm_id as row_key, * exclude (hadm_id)
        from ({seeded_sample(ADM, "hadm_id", adm_cols, settings.sample_rows, settings.seed)})
        order by row_key
    """
    sample = [
        critical(gxe.ExpectColumnValuesToBeBetween(column="age_at_admission", min_value=0, max_value=120),
                 "age_range", "ages are between 0 and 120 years (MIMIC-IV caps anchor ages at 91)"),
        critical(gxe.ExpectColumnValuesToBeBetween(column="los_days", min_value=0, max_value=400, mostly=0.999),
                 "los_range", "a length of stay is non-negative and below 400 days"),
        critical(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="dischtime", column_B="admittime",
                                                             or_equal=True, mostly=0.999),
                 "discharge_after_admission", "dischtime is not before admittime"),
        critical(gxe.ExpectColumnValuesToBeInSet(column="gender", value_set=["F", "M"]),
                 "gender_values", "MIMIC-IV records gender as F or M"),
        warn(gxe.ExpectColumnValuesToBeInSet(column="admission_type", value_set=ADMISSION_TYPES),
             "admission_type_values", "admission types of MIMIC-IV 2.x/3.x"),
        warn(gxe.ExpectColumnValuesToBeBetween(column="icu_hours_outside_window", min_value=0,
                                               max_value=settings.window_hours, mostly=0.99),
             "first_icu_in_admission_window",
             f"the first ICU stay starts within {settings.window_hours:g} h of the admission window"),
    ]

    icu_cols = {c: c for c in ["stay_id", "los_days", "intime", "outtime", "first_careunit"]}
    icu_sql = f"""
        select stay_id as row_key, * exclude (stay_id)
        from ({seeded_sample(ICU, "stay_id", icu_cols, settings.sample_rows, settings.seed)})
        order by row_key
    """
    icu = [
        critical(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="outtime", column_B="intime", or_equal=True,
                                                             mostly=0.999),
                 "icu_out_after_in", "an ICU stay ends after it starts"),
        critical(gxe.ExpectColumnValuesToBeBetween(column="los_days", min_value=0, max_value=400, mostly=0.999),
                 "icu_los_range", "an ICU length of stay is non-negative and below 400 days"),
        warn(gxe.ExpectColumnValuesToNotBeNull(column="first_careunit"), "icu_careunit_known",
             "every ICU stay names its care unit"),
    ]
    return [
        schema_frame("cohort", CONTRACT),
        Frame("cohort", "profile", f"{ADM}, {ICU}", "aggregate", "row counts vs staging, keys, cohort sizes (exact)",
              profile_sql, profile),
        Frame("cohort", "admissions_sample", ADM, "sample", f"{settings.sample_rows} seeded admissions",
              sample_sql, sample),
        Frame("cohort", "icustays_sample", ICU, "sample", f"{settings.sample_rows} seeded ICU stays", icu_sql, icu),
    ]


SUITE = SuiteSpec("cohort", [ADM, ICU], build, description="admissions and ICU stays: counts, keys, ranges")
