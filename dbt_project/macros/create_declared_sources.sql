{#- Create every source table declared with `meta: {create_if_missing: true}` that does not exist yet, empty, with
    the declared columns and data types (and `meta.primary_key`, a list of columns, when given). Python-written
    tables (llm, synthesis, training, evaluation, dq) then exist on a fresh warehouse, so models over them build (to
    empty tables) and their source tests run before the first Python job. Existing tables are never touched.
    ehrforge/tables.py reads the same YAML and creates the same tables before Python writes. -#}
{% macro create_declared_sources() %}
  {% if execute and flags.WHICH in ('build', 'run', 'test', 'compile', 'show') %}
    {% for src in graph.sources.values() if src.meta.get('create_if_missing', false) %}
      {% set cols = [] %}
      {% for c in src.columns.values() %}
        {% if not c.data_type %}
          {{ exceptions.raise_compiler_error("source " ~ src.source_name ~ "." ~ src.name ~ ": column " ~ c.name
              ~ " needs a data_type (meta.create_if_missing creates the table from the declared columns)") }}
        {% endif %}
        {% do cols.append('"' ~ c.name ~ '" ' ~ c.data_type) %}
      {% endfor %}
      {% set pk = src.meta.get('primary_key', []) %}
      {% if pk %}
        {% do cols.append('primary key ("' ~ pk | join('", "') ~ '")') %}
      {% endif %}
      {% do run_query('create schema if not exists "' ~ src.schema ~ '"') %}
      {% do run_query('create table if not exists "' ~ src.schema ~ '"."' ~ src.identifier ~ '" ('
                      ~ cols | join(', ') ~ ')') %}
    {% endfor %}
  {% endif %}
{% endmacro %}
