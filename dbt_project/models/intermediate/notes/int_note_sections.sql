-- One row per note and section found. A section starts at a known header at the start of a line and ends
-- where the next known header starts (or at the end of the note).
with notes as (select note_id, chr(10) || clean_text as body from {{ ref('int_notes__unioned') }}),
headers as (select section, header from {{ ref('note_section_headers') }}),
hits as (
    select n.note_id, h.section, h.header,
           instr(lower(n.body), chr(10) || lower(h.header) || ':') as pos
    from notes n cross join headers h
),
firsts as (
    select note_id, section, arg_min(header, pos) as header, min(pos) as pos
    from hits where pos > 0
    group by note_id, section
),
bounded as (
    select *, lead(pos) over (partition by note_id order by pos) as next_pos
    from firsts
)
select
    b.note_id,
    b.section,
    row_number() over (partition by b.note_id order by b.pos) as section_order,
    trim(substr(n.body, b.pos + length(b.header) + 2,
                coalesce(b.next_pos, length(n.body) + 1) - (b.pos + length(b.header) + 2)),
         ' ' || chr(9) || chr(10) || chr(13)) as section_text
from bounded b
join notes n using (note_id)
