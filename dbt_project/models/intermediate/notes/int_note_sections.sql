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
-- Every spelling a heading line can take once clean_text has collapsed blanks to one space: leading / trailing
-- space, trailing colon. Matching whole lines by equality (a hash join) instead of trimming each line: trim() on
-- every line of 10k notes took seconds, the join a fraction of that.
own_line_forms as (
    select section, pre || header_key || post as form
    from headers, (values (''), (' ')) p(pre),
         (values (''), (' '), (':'), (': '), (' :'), (' : ')) q(post)
),
inline_forms as (
    select section, pre || header_key || post as form
    from headers, (values (''), (' ')) p(pre), (values (''), (' ')) q(post)
),
split as (select note_id, string_split(clean_text, chr(10)) as lines from notes),
lines as (
    select note_id, unnest(lines) as line, generate_subscripts(lines, 1) as line_no from split
),
shaped as (
    select
        note_id, line_no, line,
        upper(line) as line_upper,
        instr(line, ':') as colon
    from lines
),
headings as (
    -- one row per heading line (spellings are unique ignoring case, so a line matches at most one form)
    select s.note_id, s.line_no, coalesce(o.section, i.section) as section,
           case when o.section is null then trim(substr(s.line, s.colon + 1)) end as same_line_text
    from shaped s
    left join own_line_forms o on o.form = s.line_upper
    -- a CAPS header, a colon and text on the same line (radiology "IMPRESSION: ..."); written in capitals
    left join inline_forms i
        on s.colon > 1 and i.form = left(s.line, s.colon - 1) and trim(substr(s.line, s.colon + 1)) <> ''
    where o.section is not null or i.section is not null
),
line_ends as (
    -- character position of each line's end in clean_text (sections are cut out of the text by position,
    -- not re-assembled from lines)
    select note_id, line_no,
           sum(length(line) + 1) over (partition by note_id order by line_no
                                       rows between unbounded preceding and current row)::bigint - 1 as line_end
    from lines
),
bounded as (
    select h.*, e.line_end, e.line_end - length(l.line) + 1 as line_start,
           lead(e.line_end - length(l.line) + 1) over (partition by h.note_id order by h.line_no) as next_start
    from headings h
    join line_ends e using (note_id, line_no)
    join lines l using (note_id, line_no)
),
firsts as (
    select * from bounded
    qualify row_number() over (partition by note_id, section order by line_no) = 1
)
select
    f.note_id,
    f.section,
    row_number() over (partition by f.note_id order by f.line_no) as section_order,
    trim(concat_ws(chr(10), f.same_line_text,
                   nullif(substr(n.clean_text, f.line_end + 2,
                                 coalesce(f.next_start, length(n.clean_text) + 2) - f.line_end - 3), '')),
         ' ' || chr(9) || chr(10) || chr(13)) as section_text
from firsts f
join notes n using (note_id)
