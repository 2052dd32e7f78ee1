-- PMC-Patients case reports, typed and renamed (public text; no MIMIC data).
with source as (
    select * from {{ source('pmc_patients', 'patients') }}
),
renamed as (
    select
        cast(patient_uid as varchar) as case_report_id,
        cast(patient_id as bigint) as pmc_patient_id,
        cast("PMID" as bigint) as pmid,
        cast(title as varchar) as title,
        cast(text as varchar) as case_text,
        -- PMC-Patients ages are lists of [value, unit] pairs, e.g. "[[44.0, 'year']]": the first year value
        try_cast(regexp_extract(age, '\[\[\s*([0-9.]+)\s*,\s*''year''', 1) as double) as age_years,
        case upper(trim(gender)) when 'F' then 'F' when 'M' then 'M' end as gender
    from source
)
select * from renamed
