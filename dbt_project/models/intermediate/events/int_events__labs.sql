-- Labs: MIMIC's own flag ('abnormal') decides; without a flag, a value outside the row's reference range
-- is abnormal; without either, abnormality is unknown (NULL). Implausible when outside the item's physiological
-- range (seed physiological_ranges, mimic-code style guards).
select
    l.subject_id, l.hadm_id, cast(null as bigint) as stay_id,
    l.charttime as event_time, cast(null as timestamp) as event_end_time,
    'lab' as event_type, 'labevents' as source_table,
    {{ row_key(['l.labevent_id']) }} as source_row_key,
    cast(l.itemid as varchar) as itemid,
    coalesce(d.label, 'lab item ' || l.itemid) as item_label,
    l.value as value_text, l.valuenum as value_num, l.valueuom as unit,
    l.ref_range_lower, l.ref_range_upper,
    case
        when l.flag = 'abnormal' then true
        when l.valuenum is not null and l.ref_range_lower is not null and l.ref_range_upper is not null
            then l.valuenum < l.ref_range_lower or l.valuenum > l.ref_range_upper
        when l.flag is null and l.valuenum is null then null
        else false
    end as is_abnormal,
    {{ implausible('l.valuenum', 'r') }} as is_implausible
from {{ ref('stg_mimic_hosp__labevents') }} l
left join {{ ref('stg_mimic_hosp__d_labitems') }} d using (itemid)
left join {{ ref('physiological_ranges') }} r
    on r.source_table = 'labevents' and r.itemid = cast(l.itemid as varchar)
where l.charttime is not null
