select
    subject_id, hadm_id, cast(null as bigint) as stay_id,
    intime as event_time, outtime as event_end_time,
    'transfer' as event_type, 'transfers' as source_table,
    {{ row_key(['transfer_id']) }} as source_row_key,
    eventtype as itemid,
    coalesce(careunit, 'unknown unit') as item_label,
    eventtype as value_text, cast(null as double) as value_num, null as unit,
    cast(null as double) as ref_range_lower, cast(null as double) as ref_range_upper, cast(null as boolean) as is_abnormal
from {{ ref('stg_mimic_hosp__transfers') }}
where intime is not null
