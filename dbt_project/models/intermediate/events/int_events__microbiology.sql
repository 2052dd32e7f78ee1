-- Microbiology: one event per result row; charttime when known, else the chart date. Growth of an
-- organism is the abnormal finding.
select
    subject_id, hadm_id, cast(null as bigint) as stay_id,
    coalesce(charttime, chartdate) as event_time, cast(null as timestamp) as event_end_time,
    'microbiology' as event_type, 'microbiologyevents' as source_table,
    {{ row_key(['microevent_id']) }} as source_row_key,
    test_name as itemid,
    coalesce(test_name, 'microbiology test') as item_label,
    concat_ws('; ', 'specimen: ' || spec_type_desc, 'organism: ' || org_name, 'antibiotic: ' || ab_name,
              'interpretation: ' || interpretation, comments) as value_text,
    cast(null as double) as value_num, null as unit,
    cast(null as double) as ref_range_lower, cast(null as double) as ref_range_upper,
    org_name is not null as is_abnormal
from {{ ref('stg_mimic_hosp__microbiologyevents') }}
where coalesce(charttime, chartdate) is not null
