-- ICD procedures are dated (chartdate, midnight); their time-of-day is unknown.
select
    p.subject_id, p.hadm_id, cast(null as bigint) as stay_id,
    cast(p.chartdate as timestamp) as event_time, cast(null as timestamp) as event_end_time,
    'procedure_icd' as event_type, 'procedures_icd' as source_table,
    {{ row_key(['p.hadm_id', 'p.seq_num'], order_by=['p.chartdate', 'p.icd_code', 'p.icd_version']) }} as source_row_key,
    'ICD' || p.icd_version || ':' || p.icd_code as itemid,
    coalesce(dp.long_title, 'ICD' || p.icd_version || ' ' || p.icd_code) as item_label,
    null as value_text, cast(null as double) as value_num, null as unit,
    cast(null as double) as ref_range_lower, cast(null as double) as ref_range_upper, cast(null as boolean) as is_abnormal
from {{ ref('stg_mimic_hosp__procedures_icd') }} p
left join {{ ref('stg_mimic_hosp__d_icd_procedures') }} dp using (icd_code, icd_version)
