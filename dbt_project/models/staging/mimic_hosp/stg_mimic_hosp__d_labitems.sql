with source as (select * from {{ source('mimic_hosp', 'd_labitems') }}),
renamed as (
    select cast(itemid as integer) as itemid, label, fluid, category
    from source
)
select * from renamed
