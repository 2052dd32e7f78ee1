-- Admission/demographic facts as events: one row per admission and attribute at admittime, plus the
-- discharge (and death) at dischtime/deathtime. Age uses MIMIC's anchor_age/anchor_year.
with admissions as (select * from {{ ref('stg_mimic_hosp__admissions') }}),
patients as (select * from {{ ref('stg_mimic_hosp__patients') }}),
attrs as (
    select
        a.subject_id, a.hadm_id, a.admittime, a.dischtime, a.deathtime, a.discharge_location,
        [
            {'k': 'age', 'v': cast(p.anchor_age + year(a.admittime) - p.anchor_year as varchar), 'n': cast(p.anchor_age + year(a.admittime) - p.anchor_year as double), 'u': 'years'},
            {'k': 'gender', 'v': p.gender, 'n': null, 'u': null},
            {'k': 'race', 'v': a.race, 'n': null, 'u': null},
            {'k': 'admission_type', 'v': a.admission_type, 'n': null, 'u': null},
            {'k': 'admission_location', 'v': a.admission_location, 'n': null, 'u': null},
            {'k': 'insurance', 'v': a.insurance, 'n': null, 'u': null},
            {'k': 'language', 'v': a.language, 'n': null, 'u': null},
            {'k': 'marital_status', 'v': a.marital_status, 'n': null, 'u': null}
        ] as facts
    from admissions a
    join patients p using (subject_id)
),
admit_facts as (
    select subject_id, hadm_id, admittime, unnest(facts) as f from attrs
)
select
    subject_id, hadm_id, cast(null as bigint) as stay_id,
    admittime as event_time, cast(null as timestamp) as event_end_time,
    case when f.k in ('age', 'gender', 'race') then 'demographics' else 'admission' end as event_type,
    'admissions' as source_table,
    'hadm_id=' || hadm_id || '|attribute=' || f.k as source_row_key,
    f.k as itemid, replace(f.k, '_', ' ') as item_label, f.v as value_text, f.n as value_num, f.u as unit,
    cast(null as double) as ref_range_lower, cast(null as double) as ref_range_upper, cast(null as boolean) as is_abnormal
from admit_facts
where f.v is not null
union all
select
    subject_id, hadm_id, null, dischtime, null, 'discharge', 'admissions',
    'hadm_id=' || hadm_id || '|attribute=discharge', 'discharge', 'discharge', discharge_location, null, null,
    null, null, null
from admissions
where dischtime is not null
union all
select
    subject_id, hadm_id, null, deathtime, null, 'death', 'admissions',
    'hadm_id=' || hadm_id || '|attribute=death', 'death', 'in-hospital death', 'died', null, null,
    null, null, null
from admissions
where deathtime is not null
