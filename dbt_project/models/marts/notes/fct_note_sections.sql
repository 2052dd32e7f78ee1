-- One row per note and parsed section (child of fct_notes).
select
    s.note_id || ':' || s.section as note_section_id,
    s.note_id,
    n.subject_id,
    n.hadm_id,
    s.section,
    s.section_order,
    s.section_text,
    length(s.section_text) as n_chars
from {{ ref('int_note_sections') }} s
join {{ ref('int_notes__unioned') }} n using (note_id)
