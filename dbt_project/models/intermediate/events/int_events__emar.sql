select
    subject_id, hadm_id, cast(null as bigint) as stay_id,
    charttime as event_time, cast(null as timestamp) as event_end_time,
    'medication_administration' as event_type, 'emar' as source_table,
    {{ row_key(['emar_id']) }} as source_row_key,
    medication as itemid,
    coalesce(medication, 'medication') as item_label,
    event_txt as value_text, cast(null as double) as value_num, null as unit,
    cast(null as double) as ref_range_lower, cast(null as double) as ref_range_upper, cast(null as boolean) as is_abnormal
from {{ ref('stg_mimic_hosp__emar') }}
where charttime is not null
