with source as (select * from {{ source('mimic_hosp', 'prescriptions') }}),
renamed as (
    select
        cast(subject_id as bigint) as subject_id,
        cast(hadm_id as bigint) as hadm_id,
        cast(pharmacy_id as bigint) as pharmacy_id,
        poe_id,
        cast(starttime as timestamp) as starttime,
        cast(stoptime as timestamp) as stoptime,
        drug_type,
        drug,
        ndc,
        prod_strength,
        dose_val_rx,
        try_cast(dose_val_rx as double) as dose_val_rx_num,
        dose_unit_rx,
        route
    from source
)
select * from renamed
