-- One row per note (discharge summaries; radiology reports when present) with its main sections as
-- columns (all sections, in order, are in fct_note_sections), lengths, parse coverage, clean text, and
-- whether the same text belongs to a patient of another split.
--   has_main_sections  discharge: history of present illness and a course of care (brief hospital course, or the
--                      assessment and plan of a bare-CAPS visit note); radiology: findings or impression.
--   is_text_shared_across_splits  the exact clean_text (text_md5) also belongs to a patient of another split
--                      (n_splits_sharing_text > 1): copied or templated text would leak from train into test, so
--                      note tasks leave such notes out (every copy, whichever split it is in).
with notes as (select * from {{ ref('int_notes__unioned') }}),
sections as (select * from {{ ref('int_note_sections') }}),
splits as (select subject_id, split from {{ ref('dim_splits') }}),
pivoted as (
    select
        note_id,
        max(section_text) filter (where section = 'chief_complaint') as chief_complaint,
        max(section_text) filter (where section = 'history_of_present_illness') as history_of_present_illness,
        max(section_text) filter (where section = 'past_medical_history') as past_medical_history,
        max(section_text) filter (where section = 'physical_exam') as physical_exam,
        max(section_text) filter (where section = 'brief_hospital_course') as brief_hospital_course,
        max(section_text) filter (where section = 'assessment_and_plan') as assessment_and_plan,
        max(section_text) filter (where section = 'discharge_diagnosis') as discharge_diagnosis,
        max(section_text) filter (where section = 'discharge_medications') as discharge_medications,
        max(section_text) filter (where section = 'discharge_instructions') as discharge_instructions,
        max(section_text) filter (where section = 'findings') as findings,
        max(section_text) filter (where section = 'impression') as impression,
        count(*) as n_sections
    from sections
    group by note_id
),
texts as (
    select n.note_id, md5(n.clean_text) as text_md5, s.split
    from notes n left join splits s using (subject_id)
),
shared as (
    select text_md5, count(distinct split) as n_splits_sharing_text
    from texts group by text_md5
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
    p.physical_exam,
    p.brief_hospital_course,
    p.assessment_and_plan,
    p.discharge_diagnosis,
    p.discharge_medications,
    p.discharge_instructions,
    p.findings,
    p.impression,
    coalesce(p.n_sections, 0) as n_sections,
    case n.note_type
        when 'radiology' then coalesce(p.findings, p.impression) is not null
        else p.history_of_present_illness is not null
             and coalesce(p.brief_hospital_course, p.assessment_and_plan) is not null
    end as has_main_sections,
    t.text_md5,
    sh.n_splits_sharing_text,
    sh.n_splits_sharing_text > 1 as is_text_shared_across_splits,
    length(n.text) as n_chars,
    length(n.clean_text) - length(replace(n.clean_text, ' ', '')) + 1 as n_words,
    n.clean_text,
    n.text
from notes n
left join pivoted p using (note_id)
join texts t using (note_id)
join shared sh using (text_md5)
