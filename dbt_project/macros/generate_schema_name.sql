{#- Plain schema names (staging, marts, results, ...) instead of dbt's <target>_<custom> default, so
    Python jobs and SQL users see the same names on every machine. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
