-- Evidence-graph entities: one row per event that is an entity of the EHR-R1-style "thinking graph".
-- Entity = (entity_type, entity_label), the event's dictionary label: a coded diagnosis, an abnormal lab result
-- (MIMIC flag, else outside its reference range: fct_events.is_abnormal), a prescribed medication, a coded ICD
-- procedure. Every split is here (synthesis reads a record's entities from it); the graph marts keep train only.
-- Only events inside their admission, as everywhere in synthesis.
with events as (
    select event_id, subject_id, hadm_id, event_time, event_type, item_label, is_abnormal
    from {{ ref('fct_events') }}
    where window_status = 'in_admission'
),
mapped as (
    select
        *,
        case
            when event_type = 'diagnosis' then 'diagnosis'
            when event_type = 'lab' and is_abnormal then 'abnormal_lab'
            when event_type = 'prescription' then 'medication'
            when event_type = 'procedure_icd' then 'procedure'
        end as entity_type
    from events
)
select
    event_id,
    subject_id,
    hadm_id,
    event_time,
    entity_type,
    item_label as entity_label,
    md5(entity_type || '|' || item_label) as entity_id
from mapped
where entity_type is not null and item_label is not null
