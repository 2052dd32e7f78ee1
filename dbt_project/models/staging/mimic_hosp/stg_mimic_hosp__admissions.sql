with source as (select * from {{ source('mimic_hosp', 'admissions') }}),
renamed as (
    select
        cast(subject_id as bigint) as subject_id,
        cast(hadm_id as bigint) as hadm_id,
        cast(admittime as timestamp) as admittime,
        cast(dischtime as timestamp) as dischtime,
        cast(deathtime as timestamp) as deathtime,
        admission_type,
        admission_location,
        discharge_location,
        insurance,
        nullif(language, '?') as language,
        marital_status,
        race,
        cast(edregtime as timestamp) as edregtime,
        cast(edouttime as timestamp) as edouttime,
        cast(hospital_expire_flag as integer) = 1 as hospital_expire_flag
    from source
)
select * from renamed
