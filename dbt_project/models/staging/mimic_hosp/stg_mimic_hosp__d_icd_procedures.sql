with source as (select * from {{ source('mimic_hosp', 'd_icd_procedures') }}),
renamed as (
    select trim(icd_code) as icd_code, cast(icd_version as integer) as icd_version, long_title
    from source
)
select * from renamed
