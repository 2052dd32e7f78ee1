select
    o.subject_id, o.hadm_id, o.stay_id,
    o.charttime as event_time, cast(null as timestamp) as event_end_time,
    'output' as event_type, 'outputevents' as source_table,
    {{ row_key(['o.stay_id', 'o.itemid', 'o.charttime'],
              order_by=['o.value', 'o.valueuom', 'o.subject_id', 'o.hadm_id']) }} as source_row_key,
    cast(o.itemid as varchar) as itemid,
    coalesce(d.label, 'output item ' || o.itemid) as item_label,
    cast(o.value as varchar) as value_text, o.value as value_num, o.valueuom as unit,
    cast(null as double) as ref_range_lower, cast(null as double) as ref_range_upper, cast(null as boolean) as is_abnormal
from {{ ref('stg_mimic_icu__outputevents') }} o
left join {{ ref('stg_mimic_icu__d_items') }} d using (itemid)
where o.charttime is not null
