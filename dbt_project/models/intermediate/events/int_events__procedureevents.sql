select
    p.subject_id, p.hadm_id, p.stay_id,
    p.starttime as event_time, p.endtime as event_end_time,
    'procedure_icu' as event_type, 'procedureevents' as source_table,
    {{ row_key(['p.orderid']) }} as source_row_key,
    cast(p.itemid as varchar) as itemid,
    coalesce(d.label, 'procedure item ' || p.itemid) as item_label,
    concat_ws(' ', round(p.value, 3), p.valueuom, p.location) as value_text, p.value as value_num, p.valueuom as unit,
    cast(null as double) as ref_range_lower, cast(null as double) as ref_range_upper, cast(null as boolean) as is_abnormal
from {{ ref('stg_mimic_icu__procedureevents') }} p
left join {{ ref('stg_mimic_icu__d_items') }} d using (itemid)
where p.starttime is not null
