{#- Physiological range guard (mimic-code style, e.g. heart rate 0-300): true when `value` lies outside the
    [min_value, max_value] of its item in seed physiological_ranges (joined as `ranges`), false inside, and false
    for items without a range or without a numeric value. The row stays in the marts, flagged; answers that
    aggregate values (template QA min/max/mean) leave flagged values out. The same seed drives the GX ranges. -#}
{% macro implausible(value, ranges) -%}
    coalesce({{ value }} < {{ ranges }}.min_value or {{ value }} > {{ ranges }}.max_value, false)
{%- endmacro %}
