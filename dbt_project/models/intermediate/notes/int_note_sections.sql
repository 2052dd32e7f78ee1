-- Note sections: one row per note and section found, in the two heading styles of clinical notes.
--   MIMIC-IV-Note style    "Chief Complaint:" / "Brief Hospital Course:" alone on a line, the text below it;
--                          radiology "IMPRESSION: No acute process." (a CAPS header and its text on one line).
--   bare-CAPS style        "CHIEF COMPLAINT" / "ASSESSMENT AND PLAN" alone on a line (visit notes, e.g. ACI-BENCH).
-- A heading is a line of its own: the whole line is a header of seed note_section_headers (any case, with or
-- without a trailing colon), or it starts with the header in CAPS followed by a colon and text. "Label: text" in
-- mixed case (an inline "Impression: likely viral" inside a paragraph) is never a heading, and neither is a header
-- word that does not start its line. A section ends at the next heading (every heading line bounds, repeated ones
-- too); when a section's heading occurs twice, the first occurrence is kept.
with notes as (select note_id, clean_text from {{ ref('int_notes__unioned') }}),
headers as (select section, upper(header) as header_key from {{ ref('note_section_headers') }}),
split as (select note_id, string_split(clean_text, chr(10)) as lines from notes),
lines as (
    select note_id, unnest(lines) as line, generate_subscripts(lines, 1) as line_no from split
),
shaped as (
    select
        note_id, line_no, line,
        -- whole line = header (optional trailing colon): both styles
        regexp_replace(upper(trim(line)), '\s*:$', '') as own_line_key,
        -- CAPS header + colon + text on the same line (radiology); the header must be written in capitals
        regexp_extract(line, '^\s*([A-Z][A-Z0-9 ,/&()-]*[A-Z)])\s*:\s*(\S.*)$', 1) as inline_key,
        regexp_extract(line, '^\s*([A-Z][A-Z0-9 ,/&()-]*[A-Z)])\s*:\s*(\S.*)$', 2) as inline_text
    from lines
),
headings as (
    select s.note_id, s.line_no, coalesce(h.section, h2.section) as section,
           case when h.header_key is null then s.inline_text end as same_line_text
    from shaped s
    left join headers h on h.header_key = s.own_line_key
    left join headers h2 on h2.header_key = s.inline_key and s.inline_key <> ''
    where h.header_key is not null or h2.header_key is not null
),
bounded as (
    select *, lead(line_no) over (partition by note_id order by line_no) as next_line_no
    from headings
),
firsts as (
    select * from bounded
    qualify row_number() over (partition by note_id, section order by line_no) = 1
),
bodies as (
    select f.note_id, f.section, f.line_no, f.same_line_text,
           string_agg(l.line, chr(10) order by l.line_no) as body
    from firsts f
    left join lines l
        on l.note_id = f.note_id and l.line_no > f.line_no and l.line_no < coalesce(f.next_line_no, 2147483647)
    group by all
)
select
    note_id,
    section,
    row_number() over (partition by note_id order by line_no) as section_order,
    trim(concat_ws(chr(10), same_line_text, body), ' ' || chr(9) || chr(10) || chr(13)) as section_text
from bodies
