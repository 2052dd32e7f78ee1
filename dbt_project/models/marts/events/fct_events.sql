-- One row per clinical event, across every MIMIC-IV source the marts use (see int_events__*).
-- Admission rule: an event keeps the hadm_id of its source row; a source row without one (outpatient labs,
-- omr, some microbiology) is attributed to the subject's admission whose [admittime, dischtime] contains
-- its time, else it stays unattributed (hadm_id NULL, window_status 'no_admission'). Nothing is dropped
-- except rows with no time at all (stated per source in int_events__*). window_status says where the
-- event falls relative to its admission; synthesis uses 'in_admission' events only.
{% set parts = [
    'int_events__admissions', 'int_events__diagnoses', 'int_events__procedures_icd', 'int_events__labs',
    'int_events__microbiology', 'int_events__prescriptions', 'int_events__emar', 'int_events__transfers',
    'int_events__chartevents', 'int_events__inputevents', 'int_events__outputevents',
    'int_events__procedureevents', 'int_events__datetimeevents', 'int_events__omr'] %}
-- not materialized: inlined into both branches below, so the 16M-row union streams instead of being
-- materialized (and spilled past memory_limit) once per reference; measured 15.0 s -> 6.1 s at 20x.
with unioned as not materialized (
    {% for p in parts %}
    select * from {{ ref(p) }}
    {% if not loop.last %}union all by name{% endif %}
    {% endfor %}
),
admissions as (
    select subject_id, hadm_id, admittime, dischtime from {{ ref('stg_mimic_hosp__admissions') }}
),
with_hadm as (
    select *, 'source' as hadm_id_origin from unioned where hadm_id is not null
),
attributed as (
    select
        u.* exclude (hadm_id),
        case when u.event_time <= a.dischtime then a.hadm_id end as hadm_id,
        case when u.event_time <= a.dischtime then 'attributed' end as hadm_id_origin
    from (select * from unioned where hadm_id is null) u
    asof left join admissions a
        on u.subject_id = a.subject_id and u.event_time >= a.admittime
),
events as (
    select * from with_hadm
    union all by name
    select * from attributed
)
select
    md5(e.source_table || '|' || e.source_row_key) as event_id,
    e.subject_id,
    e.hadm_id,
    e.stay_id,
    e.event_time,
    e.event_end_time,
    round(date_diff('second', a.admittime, e.event_time) / 3600.0, 4) as hours_since_admit,
    e.event_type,
    e.itemid,
    e.item_label,
    e.value_text,
    e.value_num,
    e.unit,
    e.ref_range_lower,
    e.ref_range_upper,
    e.is_abnormal,
    coalesce(e.is_implausible, false) as is_implausible,
    case
        when e.hadm_id is null then 'no_admission'
        when e.event_time between a.admittime and a.dischtime then 'in_admission'
        when e.event_time >= a.admittime - to_hours({{ var('event_window_grace_hours') }})
         and e.event_time <= a.dischtime + to_hours({{ var('event_window_grace_hours') }}) then 'near_admission'
        else 'outside_admission'
    end as window_status,
    e.hadm_id_origin,
    e.source_table,
    e.source_row_key
from events e
left join admissions a on a.hadm_id = e.hadm_id
