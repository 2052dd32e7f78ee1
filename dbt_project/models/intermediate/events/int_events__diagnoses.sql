-- Billed ICD diagnoses carry no time in MIMIC: they are coded at discharge, so event_time = dischtime
-- (a model predicting at an earlier time must not see them).
select
    d.subject_id, d.hadm_id, cast(null as bigint) as stay_id,
    a.dischtime as event_time, cast(null as timestamp) as event_end_time,
    'diagnosis' as event_type, 'diagnoses_icd' as source_table,
    {{ row_key(['d.hadm_id', 'd.seq_num'], order_by=['d.icd_code', 'd.icd_version']) }} as source_row_key,
    'ICD' || d.icd_version || ':' || d.icd_code as itemid,
    coalesce(dd.long_title, 'ICD' || d.icd_version || ' ' || d.icd_code) as item_label,
    cast(d.seq_num as varchar) as value_text, cast(d.seq_num as double) as value_num, 'priority' as unit,
    cast(null as double) as ref_range_lower, cast(null as double) as ref_range_upper, cast(null as boolean) as is_abnormal
from {{ ref('stg_mimic_hosp__diagnoses_icd') }} d
join {{ ref('stg_mimic_hosp__admissions') }} a using (hadm_id)
left join {{ ref('stg_mimic_hosp__d_icd_diagnoses') }} dd using (icd_code, icd_version)
