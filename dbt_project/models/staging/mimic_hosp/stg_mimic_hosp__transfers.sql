with source as (select * from {{ source('mimic_hosp', 'transfers') }}),
renamed as (
    select
        cast(transfer_id as bigint) as transfer_id,
        cast(subject_id as bigint) as subject_id,
        cast(hadm_id as bigint) as hadm_id,
        eventtype,
        careunit,
        cast(intime as timestamp) as intime,
        cast(outtime as timestamp) as outtime
    from source
)
select * from renamed
