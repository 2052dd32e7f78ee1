with source as (select * from {{ source('mimic_hosp', 'procedures_icd') }}),
renamed as (
    select
        cast(subject_id as bigint) as subject_id,
        cast(hadm_id as bigint) as hadm_id,
        cast(seq_num as integer) as seq_num,
        cast(chartdate as date) as chartdate,
        trim(icd_code) as icd_code,
        cast(icd_version as integer) as icd_version
    from source
)
select * from renamed
