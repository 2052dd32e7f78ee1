select
    subject_id, hadm_id, cast(null as bigint) as stay_id,
    starttime as event_time, stoptime as event_end_time,
    'prescription' as event_type, 'prescriptions' as source_table,
    {{ row_key(['subject_id', 'pharmacy_id', 'poe_id', 'drug', 'starttime'],
              order_by=['hadm_id', 'stoptime', 'drug_type', 'ndc', 'prod_strength', 'dose_val_rx', 'dose_unit_rx', 'route']) }} as source_row_key,
    coalesce(ndc, drug) as itemid,
    drug as item_label,
    concat_ws(' ', dose_val_rx, dose_unit_rx, route) as value_text,
    dose_val_rx_num as value_num, dose_unit_rx as unit,
    cast(null as double) as ref_range_lower, cast(null as double) as ref_range_upper, cast(null as boolean) as is_abnormal
from {{ ref('stg_mimic_hosp__prescriptions') }}
where starttime is not null
