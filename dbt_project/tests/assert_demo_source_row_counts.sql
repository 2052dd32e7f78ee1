-- On the MIMIC-IV demo v2.2, every raw table has exactly the row count the release documents
-- (meta.demo_rows in the source YAML; figures from shared/data/README.md, chartevents = the reconstruction).
-- The demo is detected by its 100 patients; force with EHRFORGE_CHECK_DEMO_COUNTS=true|false.
{% set mode = var('check_demo_counts') | string | lower %}
{% set tables = [] %}
{% if execute %}
  {% for src in graph.sources.values() if src.meta.get('demo_rows') is not none %}
    {% do tables.append(src) %}
  {% endfor %}
{% endif %}
with is_demo as (
    select {% if mode == 'true' %} true {% elif mode == 'false' %} false
           {% else %} (select count(*) from {{ source('mimic_hosp', 'patients') }}) = 100 {% endif %} as flag
),
counts as (
    {% for src in tables %}
    select '{{ src.source_name }}.{{ src.name }}' as source_table, count(*) as actual_rows, {{ src.meta.demo_rows }} as expected_rows
    from {{ source(src.source_name, src.name) }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
    {% if not tables %}select null as source_table, 0 as actual_rows, 0 as expected_rows where false{% endif %}
)
select counts.* from counts, is_demo
where is_demo.flag and actual_rows != expected_rows
