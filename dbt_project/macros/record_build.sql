{#- One row per dbt invocation in meta.dbt_builds. Python jobs read the latest row and refuse to use marts
    from a build that had errors, so a half-finished build never looks complete. -#}
{% macro record_build(results) %}
  {% if execute and flags.WHICH in ('build', 'run') %}
    {% set failed = [] %}
    {% for r in results %}
      {% if r.status in ('error', 'fail', 'runtime error') %}{% do failed.append(r.node.name) %}{% endif %}
    {% endfor %}
    {% do run_query("create schema if not exists meta") %}
    {% do run_query("create table if not exists meta.dbt_builds (invocation_id varchar, command varchar, "
        ~ "n_nodes integer, n_errors integer, failed_nodes varchar, mimic_root varchar, finished_at timestamp)") %}
    {% do run_query("insert into meta.dbt_builds values ('" ~ invocation_id ~ "', '" ~ flags.WHICH ~ "', "
        ~ results | length ~ ", " ~ failed | length ~ ", '" ~ failed | join(',') ~ "', '"
        ~ env_var('MIMIC_ROOT', '') | replace("'", "''") ~ "', now()::timestamp)") %}
  {% endif %}
{% endmacro %}
