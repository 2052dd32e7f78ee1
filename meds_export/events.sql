-- One MEDS event per marts.fct_events row (1:1, so counts reconcile per event_type), coded by MEDS conventions
-- (MIMIC_IV_MEDS / MEDS-DEV style, components joined by '//', a missing component written as 'UNK'), plus one
-- MEDS_BIRTH per subject. Read by meds_export/export.py; `{unk}` is replaced by the configured placeholder.
-- numeric_value keeps value_num where it is a measurement (diagnosis/ICD-procedure value_num is MIMIC's seq_num,
-- a billing priority, so it is not exported); text_value keeps value_text unless the code already carries it or
-- it only repeats the number (numeric labs, chart and output values).
-- Rows not from fct_events: one MEDS_BIRTH per subject, and ICU_ADMISSION / ICU_DISCHARGE per ICU stay
-- (marts.dim_icustays, as the MEDS MIMIC-IV conversion writes them from icustays): ACES task configs need a stay's
-- in and out times, which transfer rows do not mark (contiguous ICU transfers are one stay).
with e as (select * from marts.fct_events),
coded as (
    select
        e.subject_id,
        e.event_time as time,
        case e.event_type
            when 'admission' then
                case when e.itemid = 'admission_type' then 'HOSPITAL_ADMISSION//' || coalesce(e.value_text, '{unk}')
                     else upper(e.itemid) || '//' || coalesce(e.value_text, '{unk}') end
            when 'demographics' then
                case when e.itemid = 'age' then 'AGE' else upper(e.itemid) || '//' || coalesce(e.value_text, '{unk}') end
            when 'discharge' then 'HOSPITAL_DISCHARGE//' || coalesce(e.value_text, '{unk}')
            when 'death' then 'MEDS_DEATH'
            when 'diagnosis' then 'DIAGNOSIS//ICD//' || replace(split_part(e.itemid, ':', 1), 'ICD', '') || '//'
                                  || split_part(e.itemid, ':', 2)
            when 'procedure_icd' then 'PROCEDURE//ICD//' || replace(split_part(e.itemid, ':', 1), 'ICD', '') || '//'
                                      || split_part(e.itemid, ':', 2)
            when 'lab' then 'LAB//' || e.itemid || '//' || coalesce(e.unit, '{unk}')
            -- the MEDS MIMIC-IV conversion codes charted values as LAB//<itemid>//<unit> too
            when 'chart' then 'LAB//' || e.itemid || '//' || coalesce(e.unit, '{unk}')
            when 'microbiology' then 'MICROBIOLOGY//' || coalesce(e.itemid, '{unk}')
            when 'prescription' then 'MEDICATION//START//' || coalesce(e.item_label, '{unk}')
            when 'medication_administration' then 'MEDICATION//' || coalesce(e.item_label, '{unk}') || '//'
                                                  || coalesce(e.value_text, '{unk}')
            when 'transfer' then 'TRANSFER_TO//' || coalesce(e.itemid, '{unk}') || '//' || coalesce(e.item_label, '{unk}')
            when 'input' then 'INFUSION//' || e.itemid || '//' || coalesce(e.unit, '{unk}')
            when 'output' then 'SUBJECT_FLUID_OUTPUT//' || e.itemid || '//' || coalesce(e.unit, '{unk}')
            when 'procedure_icu' then 'PROCEDURE//START//' || e.itemid
            when 'datetime' then 'DATETIME//' || e.itemid
            when 'omr' then 'OMR//' || coalesce(e.itemid, '{unk}')
        end as code,
        case when e.event_type in ('diagnosis', 'procedure_icd', 'admission', 'discharge', 'death') then null
             else cast(e.value_num as float) end as numeric_value,
        -- no text where the value is already part of the code
        case when e.event_type in ('admission', 'demographics', 'discharge', 'death', 'diagnosis', 'procedure_icd',
                                   'medication_administration', 'transfer') then null
             when e.value_num is not null and e.event_type in ('lab', 'chart', 'output') then null
             else e.value_text end as text_value,
        e.event_type,
        e.item_label,
        e.event_id
    from e
),
births as (
    -- MIMIC-IV keeps only the year of birth (anchor_year - anchor_age = year(admittime) - age_at_admission):
    -- MEDS_BIRTH at 1 January of it, as the MEDS MIMIC-IV conversion does
    select subject_id, make_timestamp(min(year(admittime) - age_at_admission), 1, 1, 0, 0, 0) as time,
           'MEDS_BIRTH' as code, cast(null as float) as numeric_value, cast(null as varchar) as text_value,
           'birth' as event_type, 'birth' as item_label, cast(null as varchar) as event_id
    from marts.dim_admissions
    group by subject_id
),
icu_stays as (
    select subject_id, intime as time, 'ICU_ADMISSION//' || coalesce(first_careunit, '{unk}') as code,
           cast(null as float) as numeric_value, cast(null as varchar) as text_value,
           'icu_stay' as event_type, first_careunit as item_label, cast(null as varchar) as event_id
    from marts.dim_icustays where intime is not null
    union all
    select subject_id, outtime, 'ICU_DISCHARGE//' || coalesce(last_careunit, '{unk}'),
           cast(null as float), cast(null as varchar), 'icu_stay', last_careunit, cast(null as varchar)
    from marts.dim_icustays where outtime is not null
)
select * from coded
union all
select * from births
union all
select * from icu_stays
