with source as (select * from {{ source('mimic_hosp', 'omr') }}),
renamed as (
    select
        cast(subject_id as bigint) as subject_id,
        cast(chartdate as date) as chartdate,
        cast(seq_num as integer) as seq_num,
        result_name,
        result_value
    from source
)
select * from renamed
