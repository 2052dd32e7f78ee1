with source as (select * from {{ source('mimic_icu', 'icustays') }}),
renamed as (
    select
        cast(stay_id as bigint) as stay_id,
        cast(subject_id as bigint) as subject_id,
        cast(hadm_id as bigint) as hadm_id,
        first_careunit,
        last_careunit,
        cast(intime as timestamp) as intime,
        cast(outtime as timestamp) as outtime,
        cast(los as double) as los_days
    from source
)
select * from renamed
