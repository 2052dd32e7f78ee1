with source as (select * from {{ source('mimic_icu', 'd_items') }}),
renamed as (
    select
        cast(itemid as integer) as itemid,
        label,
        abbreviation,
        linksto,
        category,
        unitname,
        cast(lownormalvalue as double) as lownormalvalue,
        cast(highnormalvalue as double) as highnormalvalue
    from source
)
select * from renamed
