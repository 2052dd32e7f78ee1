{#- Generic tests written here so the project needs no dbt package download. -#}
{% test value_between(model, column_name, min_value, max_value) %}
select * from {{ model }}
where {{ column_name }} is not null and ({{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }})
{% endtest %}


{#- No two rows share the same values in `columns` (a composite key). -#}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n_rows
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{#- Unique ignoring case: headers are matched case-insensitively, so 'Impression' and 'IMPRESSION' would clash. -#}
{% test unique_case_insensitive(model, column_name) %}
select upper({{ column_name }}) as value, count(*) as n from {{ model }}
group by 1 having count(*) > 1
{% endtest %}
