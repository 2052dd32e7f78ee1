with source as (select * from {{ source('mimic_hosp', 'labevents') }}),
renamed as (
    select
        cast(labevent_id as bigint) as labevent_id,
        cast(subject_id as bigint) as subject_id,
        cast(hadm_id as bigint) as hadm_id,
        cast(specimen_id as bigint) as specimen_id,
        cast(itemid as integer) as itemid,
        cast(charttime as timestamp) as charttime,
        cast(storetime as timestamp) as storetime,
        value,
        cast(valuenum as double) as valuenum,
        valueuom,
        cast(ref_range_lower as double) as ref_range_lower,
        cast(ref_range_upper as double) as ref_range_upper,
        flag,
        priority,
        comments
    from source
)
select * from renamed
