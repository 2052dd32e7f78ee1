-- One row per note (discharge summaries; radiology reports when present) with its main sections as
-- columns (all sections, in order, are in fct_note_sections), lengths, and clean text.
with notes as (select * from {{ ref('int_notes__unioned') }}),
sections as (select * from {{ ref('int_note_sections') }}),
pivoted as (
    select
        note_id,
        max(section_text) filter (where section = 'chief_complaint') as chief_complaint,
        max(section_text) filter (where section = 'history_of_present_illness') as history_of_present_illness,
        max(section_text) filter (where section = 'past_medical_history') as past_medical_history,
        max(section_text) filter (where section = 'brief_hospital_course') as brief_hospital_course,
        max(section_text) filter (where section = 'discharge_diagnosis') as discharge_diagnosis,
        max(section_text) filter (where section = 'discharge_medications') as discharge_medications,
        max(section_text) filter (where section = 'discharge_instructions') as discharge_instructions,
        max(section_text) filter (where section = 'impression') as impression,
        count(*) as n_sections
    from sections
    group by note_id
)
select
    n.note_id,
    n.subject_id,
    n.hadm_id,
    n.note_type,
    n.note_seq,
    n.charttime,
    p.chief_complaint,
    p.history_of_present_illness,
    p.past_medical_history,
    p.brief_hospital_course,
    p.discharge_diagnosis,
    p.discharge_medications,
    p.discharge_instructions,
    p.impression,
    coalesce(p.n_sections, 0) as n_sections,
    length(n.text) as n_chars,
    length(n.clean_text) - length(replace(n.clean_text, ' ', '')) + 1 as n_words,
    n.clean_text,
    n.text
from notes n
left join pivoted p using (note_id)
