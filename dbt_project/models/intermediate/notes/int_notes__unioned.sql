-- Discharge summaries and radiology reports in one shape, with whitespace-normalised text:
-- runs of spaces/tabs collapse to one, 3+ newlines to 2; MIMIC's '___' de-identification marks are kept.
with unioned as (
    select *, 'discharge' as note_kind from {{ ref('stg_mimic_note__discharge') }}
    union all
    select *, 'radiology' as note_kind from {{ ref('stg_mimic_note__radiology') }}
)
select
    note_id, subject_id, hadm_id, note_kind as note_type, note_seq, charttime, storetime, text,
    trim(regexp_replace(regexp_replace(replace(text, chr(13), ''), '[ \t]+', ' ', 'g'), '\n\s*\n(\s*\n)+', chr(10) || chr(10), 'g')) as clean_text
from unioned
where text is not null
