{#- Lineage key of a source row as readable text: 'labevent_id=123' or 'stay_id=1|itemid=220045|charttime=...'.
    Together with source_table it identifies the row in the raw file; event_id is its md5.

    Sources without a row id (chartevents, outputevents, ...) key a row by its natural columns, and real MIMIC
    repeats those: multi-valued chart items share stay, item and minute (101,720 demo chart rows in 21,917 such
    groups), and some raw rows are exact duplicates. Pass `order_by` (the row's remaining columns) for such a
    source: the second and later rows of a group get '|occurrence=<n>', numbered in the order of their content.
    The first row keeps the plain key, so a source without repeats keys exactly as before. Rows that tie on
    every ordered column are identical events, so whichever gets which number, a rebuild of the same files
    yields the same set of (key, row) pairs, whatever order the file holds them in. -#}
{% macro row_key(columns, order_by=none) -%}
    concat_ws('|'{% for c in columns %}, '{{ c }}=' || coalesce(cast({{ c }} as varchar), ''){% endfor %}
    {%- if order_by is not none %},
        case when {{ occurrence(columns, order_by) }} > 1 then 'occurrence=' || {{ occurrence(columns, order_by) }} end
    {%- endif %})
{%- endmacro %}

{#- 1-based rank of a row among the rows sharing `columns`, ordered by its content (`order_by`). -#}
{% macro occurrence(columns, order_by) -%}
    row_number() over (partition by {{ columns | join(', ') }} order by {{ order_by | join(', ') }})
{%- endmacro %}
