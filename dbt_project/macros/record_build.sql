{#- A build marker per dbt invocation in meta.dbt_builds: `open_build` (the first on-run-start hook) inserts the row
    with status 'running'; `record_build` (on-run-end) closes it as 'succeeded' or 'failed'. A build that is
    killed, or stops in a later hook, leaves 'running', so Python jobs (warehouse.require_finished_build) refuse
    its marts: an interrupted or failed build can never leave marts that a job accepts.
    touches_marts: the invocation changes staging/intermediate/mart tables or seeds; a build of the results
    marts alone (evaluation's results step) is not a build of the marts and does not count. -#}
{% macro _dbt_builds_ddl() %}
  {% do run_query("create schema if not exists meta") %}
  {% do run_query("create table if not exists meta.dbt_builds (invocation_id varchar, command varchar, "
      ~ "n_nodes integer, n_errors integer, failed_nodes varchar, mimic_root varchar, finished_at timestamp, "
      ~ "started_at timestamp, status varchar, touches_marts boolean)") %}
  {#- warehouses built before the marker existed -#}
  {% for col in ["started_at timestamp", "status varchar", "touches_marts boolean"] %}
    {% do run_query("alter table meta.dbt_builds add column if not exists " ~ col) %}
  {% endfor %}
{% endmacro %}

{% macro build_touches_marts() %}
  {% set ns = namespace(touches=false) %}
  {% for uid in selected_resources %}
    {% set node = graph.nodes.get(uid) %}
    {% if node and node.resource_type in ('model', 'seed', 'snapshot')
          and not (node.resource_type == 'model' and node.fqn[1] == 'results') %}
      {% set ns.touches = true %}
    {% endif %}
  {% endfor %}
  {{ return(ns.touches) }}
{% endmacro %}

{% macro open_build() %}
  {% if execute and flags.WHICH in ('build', 'run', 'seed') %}
    {% do _dbt_builds_ddl() %}
    {% do run_query("insert into meta.dbt_builds (invocation_id, command, mimic_root, started_at, status, "
        ~ "touches_marts) values ('" ~ invocation_id ~ "', '" ~ flags.WHICH ~ "', '"
        ~ env_var('MIMIC_ROOT', '') | replace("'", "''") ~ "', now()::timestamp, 'running', "
        ~ build_touches_marts() ~ ")") %}
  {% endif %}
{% endmacro %}

{% macro record_build(results) %}
  {% if execute and flags.WHICH in ('build', 'run', 'seed') %}
    {% set failed = [] %}
    {% for r in results %}
      {% if r.status in ('error', 'fail', 'runtime error') %}{% do failed.append(r.node.name) %}{% endif %}
    {% endfor %}
    {% do _dbt_builds_ddl() %}
    {% set status = 'failed' if failed else 'succeeded' %}
    {% set opened = run_query("select count(*) from meta.dbt_builds where invocation_id = '" ~ invocation_id ~ "'") %}
    {% if opened.rows[0][0] == 0 %}
      {% do open_build() %}
    {% endif %}
    {% do run_query("update meta.dbt_builds set n_nodes = " ~ results | length ~ ", n_errors = " ~ failed | length
        ~ ", failed_nodes = '" ~ failed | join(',') ~ "', finished_at = now()::timestamp, status = '" ~ status
        ~ "' where invocation_id = '" ~ invocation_id ~ "'") %}
  {% endif %}
{% endmacro %}
