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
    -- order, next admission and the 30-day readmission rule: one definition, shared with fct_outcomes
    select a.*, q.admission_seq, q.next_hadm_id, q.next_admittime, q.days_to_next_admission,
           q.is_in_hospital_death, q.is_followed_by_continuation, q.is_readmitted_30d
    from admissions a
    join {{ ref('int_admissions_sequenced') }} q using (hadm_id)
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
        s.is_in_hospital_death,
        s.next_hadm_id,
        s.next_admittime,
        s.days_to_next_admission,
        s.is_followed_by_continuation,
        s.is_readmitted_30d,
        coalesce(n.n_discharge_notes, 0) as n_discharge_notes
    from sequenced s
    join patients p using (subject_id)
    left join icu i using (hadm_id)
    left join notes n using (hadm_id)
)
select
    *,
    -- subgroups for fairness reporting (evaluation.subgroups): age bands and MIMIC's ~30 race values in 5 groups
    case
        when age_at_admission < 18 then '<18'
        when age_at_admission < 45 then '18-44'
        when age_at_admission < 65 then '45-64'
        when age_at_admission < 80 then '65-79'
        else '80+'
    end as age_band,
    case
        when race is null or race in ('UNKNOWN', 'UNABLE TO OBTAIN', 'PATIENT DECLINED TO ANSWER') then 'Unknown'
        when race like 'WHITE%' or race = 'PORTUGUESE' then 'White'
        when race like 'BLACK%' then 'Black'
        when race like 'HISPANIC%' or race = 'SOUTH AMERICAN' then 'Hispanic/Latino'
        when race like 'ASIAN%' then 'Asian'
        else 'Other'
    end as race_group,
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
