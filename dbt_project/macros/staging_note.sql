{#- The MIMIC-IV-Note tables (discharge, radiology) share one layout: one staging shape for both. -#}
{% macro staging_note(table_name) %}
with source as (select * from {{ source('mimic_note', table_name) }}),
renamed as (
    select
        note_id,
        cast(subject_id as bigint) as subject_id,
        cast(hadm_id as bigint) as hadm_id,
        note_type,
        cast(note_seq as integer) as note_seq,
        cast(charttime as timestamp) as charttime,
        cast(storetime as timestamp) as storetime,
        text
    from source
)
select * from renamed
{% endmacro %}
