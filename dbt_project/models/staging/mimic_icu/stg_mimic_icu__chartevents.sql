with source as (select * from {{ source('mimic_icu', 'chartevents') }}),
renamed as (
    select
        cast(subject_id as bigint) as subject_id,
        cast(hadm_id as bigint) as hadm_id,
        cast(stay_id as bigint) as stay_id,
        cast(charttime as timestamp) as charttime,
        cast(storetime as timestamp) as storetime,
        cast(itemid as integer) as itemid,
        value,
        cast(valuenum as double) as valuenum,
        valueuom,
        cast(warning as integer) = 1 as is_warning
    from source
)
select * from renamed
