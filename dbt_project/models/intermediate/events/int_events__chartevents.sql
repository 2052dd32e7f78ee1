-- Charted ICU data. Abnormal when outside d_items' normal range where one is given (rare), else unknown.
-- Implausible when outside the item's physiological range (seed physiological_ranges, mimic-code style guards).
select
    c.subject_id, c.hadm_id, c.stay_id,
    c.charttime as event_time, cast(null as timestamp) as event_end_time,
    'chart' as event_type, 'chartevents' as source_table,
    {{ row_key(['c.stay_id', 'c.itemid', 'c.charttime'],
              order_by=['c.value', 'c.valuenum', 'c.valueuom', 'c.storetime', 'c.is_warning', 'c.subject_id', 'c.hadm_id']) }} as source_row_key,
    cast(c.itemid as varchar) as itemid,
    coalesce(d.label, 'chart item ' || c.itemid) as item_label,
    coalesce(c.value, cast(c.valuenum as varchar)) as value_text, c.valuenum as value_num,
    coalesce(c.valueuom, d.unitname) as unit,
    d.lownormalvalue as ref_range_lower, d.highnormalvalue as ref_range_upper,
    case when c.valuenum is not null and d.lownormalvalue is not null and d.highnormalvalue is not null
         then c.valuenum < d.lownormalvalue or c.valuenum > d.highnormalvalue end as is_abnormal,
    {{ implausible('c.valuenum', 'r') }} as is_implausible
from {{ ref('stg_mimic_icu__chartevents') }} c
left join {{ ref('stg_mimic_icu__d_items') }} d using (itemid)
left join {{ ref('physiological_ranges') }} r
    on r.source_table = 'chartevents' and r.itemid = cast(c.itemid as varchar)
where c.charttime is not null
