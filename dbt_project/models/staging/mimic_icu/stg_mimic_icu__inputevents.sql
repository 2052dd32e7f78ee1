with source as (select * from {{ source('mimic_icu', 'inputevents') }}),
renamed as (
    select
        cast(subject_id as bigint) as subject_id,
        cast(hadm_id as bigint) as hadm_id,
        cast(stay_id as bigint) as stay_id,
        cast(starttime as timestamp) as starttime,
        cast(endtime as timestamp) as endtime,
        cast(itemid as integer) as itemid,
        cast(amount as double) as amount,
        amountuom,
        cast(rate as double) as rate,
        rateuom,
        cast(orderid as bigint) as orderid,
        ordercategoryname,
        statusdescription
    from source
)
select * from renamed
