{#- Lineage key of a source row as readable text: 'labevent_id=123' or 'stay_id=1|itemid=220045|charttime=...'.
    Together with source_table it identifies the row in the raw file; event_id is its md5. -#}
{% macro row_key(columns) -%}
    concat_ws('|'{% for c in columns %}, '{{ c }}=' || coalesce(cast({{ c }} as varchar), ''){% endfor %})
{%- endmacro %}
