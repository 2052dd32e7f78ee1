select
    i.subject_id, i.hadm_id, i.stay_id,
    i.starttime as event_time, i.endtime as event_end_time,
    'input' as event_type, 'inputevents' as source_table,
    {{ row_key(['i.orderid', 'i.itemid'],
              order_by=['i.starttime', 'i.endtime', 'i.amount', 'i.amountuom', 'i.rate', 'i.rateuom', 'i.stay_id',
                        'i.subject_id', 'i.hadm_id', 'i.ordercategoryname', 'i.statusdescription']) }} as source_row_key,
    cast(i.itemid as varchar) as itemid,
    coalesce(d.label, 'input item ' || i.itemid) as item_label,
    concat_ws(' ', round(i.amount, 3), i.amountuom, case when i.rate is not null then '@ ' || round(i.rate, 3) || ' ' || i.rateuom end) as value_text,
    i.amount as value_num, i.amountuom as unit,
    cast(null as double) as ref_range_lower, cast(null as double) as ref_range_upper, cast(null as boolean) as is_abnormal
from {{ ref('stg_mimic_icu__inputevents') }} i
left join {{ ref('stg_mimic_icu__d_items') }} d using (itemid)
where i.starttime is not null
