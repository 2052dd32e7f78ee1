select
    e.subject_id, e.hadm_id, e.stay_id,
    e.charttime as event_time, cast(null as timestamp) as event_end_time,
    'datetime' as event_type, 'datetimeevents' as source_table,
    {{ row_key(['e.stay_id', 'e.itemid', 'e.charttime'],
              order_by=['e.value', 'e.valueuom', 'e.subject_id', 'e.hadm_id']) }} as source_row_key,
    cast(e.itemid as varchar) as itemid,
    coalesce(d.label, 'datetime item ' || e.itemid) as item_label,
    strftime(e.value, '%Y-%m-%d %H:%M') as value_text, cast(null as double) as value_num, e.valueuom as unit,
    cast(null as double) as ref_range_lower, cast(null as double) as ref_range_upper, cast(null as boolean) as is_abnormal
from {{ ref('stg_mimic_icu__datetimeevents') }} e
left join {{ ref('stg_mimic_icu__d_items') }} d using (itemid)
where e.charttime is not null
