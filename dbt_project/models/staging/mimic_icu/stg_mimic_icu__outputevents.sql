with source as (select * from {{ source('mimic_icu', 'outputevents') }}),
renamed as (
    select
        cast(subject_id as bigint) as subject_id,
        cast(hadm_id as bigint) as hadm_id,
        cast(stay_id as bigint) as stay_id,
        cast(charttime as timestamp) as charttime,
        cast(itemid as integer) as itemid,
        cast(value as double) as value,
        valueuom
    from source
)
select * from renamed
