-- One row per ICU stay, with its admission and whether the patient died during it (deathtime <= outtime).
select
    i.stay_id,
    i.hadm_id,
    i.subject_id,
    i.first_careunit,
    i.last_careunit,
    i.intime,
    i.outtime,
    i.los_days,
    a.deathtime,
    a.deathtime is not null and a.deathtime <= i.outtime as is_icu_death,
    row_number() over (partition by i.hadm_id order by i.intime, i.stay_id) as icu_stay_seq
from {{ ref('stg_mimic_icu__icustays') }} i
join {{ ref('stg_mimic_hosp__admissions') }} a using (hadm_id)
