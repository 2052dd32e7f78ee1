{#- LLemr's event description: the text an event's embedding is made from (event type, item label, unit), and its
    stable id (md5 of that text). One macro, so the description mart and the per-event features agree. -#}
{% macro event_description(event_type, item_label, unit) -%}
    ({{ event_type }} || ': ' || {{ item_label }}
     || case when nullif(trim({{ unit }}), '') is not null then ' (' || trim({{ unit }}) || ')' else '' end)
{%- endmacro %}

{% macro event_description_id(event_type, item_label, unit) -%}
    md5({{ event_description(event_type, item_label, unit) }})
{%- endmacro %}
