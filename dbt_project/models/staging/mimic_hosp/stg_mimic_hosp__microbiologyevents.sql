with source as (select * from {{ source('mimic_hosp', 'microbiologyevents') }}),
renamed as (
    select
        cast(microevent_id as bigint) as microevent_id,
        cast(subject_id as bigint) as subject_id,
        cast(hadm_id as bigint) as hadm_id,
        cast(micro_specimen_id as bigint) as micro_specimen_id,
        cast(chartdate as timestamp) as chartdate,
        cast(charttime as timestamp) as charttime,
        spec_type_desc,
        test_name,
        org_name,
        ab_name,
        dilution_text,
        interpretation,
        comments
    from source
)
select * from renamed
