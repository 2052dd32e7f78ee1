-- Per source table, fct_events holds exactly the staged rows kept by the stated rules (rows with no time are
-- dropped; admissions contribute one event per non-null attribute plus discharge and death).
with expected as (
    select 'labevents' as source_table, count(*) filter (where charttime is not null) as n from {{ ref('stg_mimic_hosp__labevents') }}
    union all select 'microbiologyevents', count(*) filter (where coalesce(charttime, chartdate) is not null) from {{ ref('stg_mimic_hosp__microbiologyevents') }}
    union all select 'prescriptions', count(*) filter (where starttime is not null) from {{ ref('stg_mimic_hosp__prescriptions') }}
    union all select 'emar', count(*) filter (where charttime is not null) from {{ ref('stg_mimic_hosp__emar') }}
    union all select 'transfers', count(*) filter (where intime is not null) from {{ ref('stg_mimic_hosp__transfers') }}
    union all select 'diagnoses_icd', count(*) from {{ ref('stg_mimic_hosp__diagnoses_icd') }} d
        where exists (select 1 from {{ ref('stg_mimic_hosp__admissions') }} a where a.hadm_id = d.hadm_id)
    union all select 'procedures_icd', count(*) from {{ ref('stg_mimic_hosp__procedures_icd') }}
    union all select 'omr', count(*) filter (where chartdate is not null) from {{ ref('stg_mimic_hosp__omr') }}
    union all select 'chartevents', count(*) filter (where charttime is not null) from {{ ref('stg_mimic_icu__chartevents') }}
    union all select 'inputevents', count(*) filter (where starttime is not null) from {{ ref('stg_mimic_icu__inputevents') }}
    union all select 'outputevents', count(*) filter (where charttime is not null) from {{ ref('stg_mimic_icu__outputevents') }}
    union all select 'procedureevents', count(*) filter (where starttime is not null) from {{ ref('stg_mimic_icu__procedureevents') }}
    union all select 'datetimeevents', count(*) filter (where charttime is not null) from {{ ref('stg_mimic_icu__datetimeevents') }}
    union all select 'admissions', sum(
            (a.race is not null)::int + (a.admission_type is not null)::int + (a.admission_location is not null)::int
            + (a.insurance is not null)::int + (a.language is not null)::int + (a.marital_status is not null)::int
            + (p.gender is not null)::int + 1 -- age is always known
            + (a.dischtime is not null)::int + (a.deathtime is not null)::int)
        from {{ ref('stg_mimic_hosp__admissions') }} a join {{ ref('stg_mimic_hosp__patients') }} p using (subject_id)
),
actual as (
    select source_table, count(*) as n from {{ ref('fct_events') }} group by source_table
)
select e.source_table, e.n as expected_rows, coalesce(a.n, 0) as actual_rows
from expected e
left join actual a using (source_table)
where e.n != coalesce(a.n, 0)
