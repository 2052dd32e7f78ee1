-- One row per prediction-task instance (an admission or an ICU stay) with its prediction time, the time
-- its outcome becomes known, and the label. Only eligible instances are emitted: the patient is alive and
-- still in hospital (or ICU) at the prediction time, so every prediction_time precedes outcome_time.
--   in_hospital_mortality  admittime + 24h  -> deathtime (1) or dischtime (0)
--   los_gt_3d / los_gt_7d  admittime + 24h  -> admittime + 3/7 days (1) or dischtime (0)
--   readmission_30d        dischtime        -> next admittime (1) or dischtime + 30 days (0); the rule and its
--                                              exclusions (in-hospital deaths, continuations within
--                                              var('readmission_continuation_hours') h) are int_admissions_sequenced's,
--                                              read through dim_admissions.is_readmitted_30d (NULL = not eligible)
--   icu_mortality          intime + 24h     -> deathtime (1) or ICU outtime (0)
{% set h = var('prediction_hours_after_admit') %}
-- admissions with impossible times (dischtime < admittime) get no time-based label
with adm as (select * from {{ ref('dim_admissions') }} where is_dischtime_before_admittime is not true),
icu as (select * from {{ ref('dim_icustays') }}),
hosp_window as (
    select *, admittime + to_hours({{ h }}) as pt
    from adm
    where dischtime > admittime + to_hours({{ h }})
      and (deathtime is null or deathtime > admittime + to_hours({{ h }}))
),
rows as (
    select 'in_hospital_mortality' as task, subject_id, hadm_id, cast(null as bigint) as stay_id, pt as prediction_time,
           coalesce(case when is_in_hospital_death then coalesce(deathtime, dischtime) end, dischtime) as outcome_time,
           is_in_hospital_death as label
    from hosp_window
    union all
    select 'los_gt_3d', subject_id, hadm_id, null, pt,
           case when los_days > 3 then admittime + to_days(3) else dischtime end, los_days > 3
    from hosp_window
    union all
    select 'los_gt_7d', subject_id, hadm_id, null, pt,
           case when los_days > 7 then admittime + to_days(7) else dischtime end, los_days > 7
    from hosp_window
    union all
    select 'readmission_30d', subject_id, hadm_id, null, dischtime,
           case when is_readmitted_30d then next_admittime else dischtime + to_days({{ var('readmission_days') }}) end,
           is_readmitted_30d
    from adm
    where is_readmitted_30d is not null
    union all
    select 'icu_mortality', subject_id, hadm_id, stay_id, intime + to_hours({{ var('icu_prediction_hours_after_intime') }}),
           case when is_icu_death then deathtime else outtime end, is_icu_death
    from icu
    where outtime > intime + to_hours({{ var('icu_prediction_hours_after_intime') }})
      and (deathtime is null or deathtime > intime + to_hours({{ var('icu_prediction_hours_after_intime') }}))
)
select
    task || ':' || coalesce(stay_id, hadm_id) as outcome_id,
    task,
    subject_id,
    hadm_id,
    stay_id,
    prediction_time,
    outcome_time,
    label,
    cast(label as integer) as label_int
from rows
