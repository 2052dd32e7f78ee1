with source as (select * from {{ source('mimic_hosp', 'emar') }}),
renamed as (
    select
        emar_id,
        cast(emar_seq as integer) as emar_seq,
        cast(subject_id as bigint) as subject_id,
        cast(hadm_id as bigint) as hadm_id,
        cast(pharmacy_id as bigint) as pharmacy_id,
        cast(charttime as timestamp) as charttime,
        medication,
        event_txt,
        cast(scheduletime as timestamp) as scheduletime
    from source
)
select * from renamed
