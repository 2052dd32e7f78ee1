-- Cohort: one row per hospital admission with demographics, stay facts, outcomes and inclusion flags.
-- Age at admission follows MIMIC-IV's anchor convention: anchor_age + (year(admittime) - anchor_year).
-- LLemr cohort (Wu et al., "Instruction tuning LLMs on large-scale EHR"): ICU admissions with exactly
-- var('llemr_n_icu_stays') ICU stay(s), a discharge note (if var('llemr_require_note')), adult
-- (>= var('cohort_min_age')) and non-negative length of stay.
with admissions as (select * from {{ ref('stg_mimic_hosp__admissions') }}),
patients as (select * from {{ ref('stg_mimic_hosp__patients') }}),
icu as (
    select hadm_id, count(*) as n_icu_stays, min(intime) as first_icu_intime
    from {{ ref('stg_mimic_icu__icustays') }}
    group by hadm_id
),
notes as (
    select hadm_id, count(*) as n_discharge_notes
    from {{ ref('stg_mimic_note__discharge') }}
    where hadm_id is not null
    group by hadm_id
),
sequenced as (
    select
        a.*,
        lead(a.admittime) over (partition by a.subject_id order by a.admittime, a.hadm_id) as next_admittime,
        lead(a.hadm_id) over (partition by a.subject_id order by a.admittime, a.hadm_id) as next_hadm_id,
        row_number() over (partition by a.subject_id order by a.admittime, a.hadm_id) as admission_seq
    from admissions a
),
joined as (
    select
        s.hadm_id,
        s.subject_id,
        s.admission_seq,
        p.gender,
        p.anchor_age + year(s.admittime) - p.anchor_year as age_at_admission,
        s.race,
        s.admission_type,
        s.admission_location,
        s.discharge_location,
        s.insurance,
        s.admittime,
        s.dischtime,
        s.deathtime,
        date_diff('second', s.admittime, s.dischtime) / 86400.0 as los_days,
        coalesce(i.n_icu_stays, 0) as n_icu_stays,
        i.first_icu_intime,
        s.deathtime is not null or s.hospital_expire_flag as is_in_hospital_death,
        s.next_hadm_id,
        s.next_admittime,
        date_diff('second', s.dischtime, s.next_admittime) / 86400.0 as days_to_next_admission,
        coalesce(n.n_discharge_notes, 0) as n_discharge_notes
    from sequenced s
    join patients p using (subject_id)
    left join icu i using (hadm_id)
    left join notes n using (hadm_id)
)
select
    *,
    -- readmission is undefined (NULL) after an in-hospital death
    case when is_in_hospital_death then null
         else coalesce(days_to_next_admission between 0 and {{ var('readmission_days') }}, false)
    end as is_readmitted_30d,
    n_icu_stays > 0 as has_icu_stay,
    n_discharge_notes > 0 as has_discharge_note,
    age_at_admission >= {{ var('cohort_min_age') }} as is_adult,
    true as is_all_admissions_cohort,
    -- impossible times (real MIMIC-IV has a few): flagged, kept out of time-based labels (fct_outcomes), counted by
    -- the warn-level test assert_admission_times_ordered
    coalesce(dischtime < admittime, false) as is_dischtime_before_admittime,
    n_icu_stays = {{ var('llemr_n_icu_stays') }}
        and ({{ 'n_discharge_notes > 0' if var('llemr_require_note') else 'true' }})
        and age_at_admission >= {{ var('cohort_min_age') }}
        and los_days >= 0 as is_llemr_cohort
from joined
