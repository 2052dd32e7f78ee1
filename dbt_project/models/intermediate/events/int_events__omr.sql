-- Online medical record (outpatient BP, weight, BMI, ...): dated, no hadm_id; attributed to an admission
-- only when its date falls inside one (see fct_events). Blood pressure stays text ('120/80').
select
    subject_id, cast(null as bigint) as hadm_id, cast(null as bigint) as stay_id,
    cast(chartdate as timestamp) as event_time, cast(null as timestamp) as event_end_time,
    'omr' as event_type, 'omr' as source_table,
    {{ row_key(['subject_id', 'chartdate', 'seq_num', 'result_name'], order_by=['result_value']) }} as source_row_key,
    result_name as itemid, result_name as item_label,
    result_value as value_text, try_cast(result_value as double) as value_num, null as unit,
    cast(null as double) as ref_range_lower, cast(null as double) as ref_range_upper, cast(null as boolean) as is_abnormal
from {{ ref('stg_mimic_hosp__omr') }}
where chartdate is not null
