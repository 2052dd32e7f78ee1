{#-
  Register every raw MIMIC-IV file as a view before the build: raw_hosp.<table>, raw_icu.<table>,
  raw_note.<table>. Each source table is looked up under its module folder as <table>.parquet,
  <table>.csv.gz or <table>.csv (first found wins), so the same project reads the PhysioNet CSVs,
  a re-compressed copy or a parquet conversion. CSVs are read as all-VARCHAR: staging models do the
  typing explicitly, so a sniffer guess (leading-zero ICD codes, mixed-type `value`) never changes types.
  Dialect is fixed (comma, RFC-4180 double quotes) rather than sniffed: the sniffer samples the first rows only,
  and a big file whose first quoted field comes late would otherwise be read with no quote character.

  Folders: $MIMIC_ROOT/hosp, $MIMIC_ROOT/icu, and $MIMIC_NOTE_ROOT (default $MIMIC_ROOT/note).
  A missing required table or a renamed/missing column stops the build here, before any model runs,
  naming the file and the fix, and so does a file with a header but no rows (whatever the data size).
  Optional tables (meta.optional: true, e.g. the notes) become empty views when absent.
  A selection that reads no raw file (e.g. `dbt build --select results`) skips all of this and needs no MIMIC_ROOT.
-#}
{#- Whether the selected nodes read a source whose source-level meta has `meta_key` (mimic_module: the raw MIMIC
    files; case_reports_env: the PMC-Patients CSV). -#}
{% macro selection_reads_raw_files(meta_key='mimic_module') %}
  {% set ns = namespace(reads=false) %}
  {% for uid in selected_resources %}
    {% set node = graph.nodes.get(uid) %}
    {% for dep in (node.depends_on.nodes if node else []) %}
      {% if dep.startswith('source.') and graph.sources[dep].source_meta.get(meta_key) %}
        {% set ns.reads = true %}
      {% endif %}
    {% endfor %}
  {% endfor %}
  {{ return(ns.reads) }}
{% endmacro %}

{#- The columns `relation` has (lower case) and the declared columns of `src` it lacks. -#}
{% macro declared_columns_missing(src, relation) %}
  {% set actual = run_query("select lower(column_name) from (describe " ~ relation ~ ")").columns[0].values() | list %}
  {% set missing = [] %}
  {% for c in src.columns.values() %}
    {% if c.name | lower not in actual %}{% do missing.append(c.name) %}{% endif %}
  {% endfor %}
  {{ return({'actual': actual, 'missing': missing}) }}
{% endmacro %}

{% macro register_mimic_sources() %}
  {% if execute and flags.WHICH in ('build', 'run', 'test', 'seed', 'compile', 'show') and selection_reads_raw_files() %}
    {% set root = env_var('MIMIC_ROOT', '') %}
    {% if not root %}
      {{ exceptions.raise_compiler_error(
          "MIMIC_ROOT is not set. Point it at the raw MIMIC-IV folder that holds hosp/ and icu/ "
          ~ "(e.g. export MIMIC_ROOT=/data/mimic-iv-2.2, or run `make demo-data` to get the open demo).") }}
    {% endif %}
    {% set note_root = env_var('MIMIC_NOTE_ROOT', root ~ '/note') %}
    {% set sources = graph.sources.values() | selectattr('source_meta.mimic_module', 'defined') | list %}
    {% for src in sources %}
      {% set module = src.source_meta.mimic_module %}
      {% set folder = note_root if module == 'note' else root ~ '/' ~ module %}
      {% set opts = src.meta.get('read_options', '') %}
      {% set relation = src.schema ~ '.' ~ src.identifier %}
      {% do run_query('create schema if not exists ' ~ src.schema) %}
      {% set found = run_query(
          "select file from glob('" ~ folder ~ "/" ~ src.identifier ~ ".*') "
          ~ "where file similar to '.*/" ~ src.identifier ~ "\\.(parquet|csv\\.gz|csv)' "
          ~ "order by case when file like '%.parquet' then 0 when file like '%.csv.gz' then 1 else 2 end") %}
      {% if found.rows | length == 0 %}
        {% if src.meta.get('optional', false) %}
          {% set cols = [] %}
          {% for c in src.columns.values() %}
            {% do cols.append("cast(null as " ~ (c.data_type or 'varchar') ~ ") as " ~ c.name) %}
          {% endfor %}
          {% do run_query('create or replace view ' ~ relation ~ ' as select ' ~ cols | join(', ') ~ ' where false') %}
          {{ log("ehrforge: optional table " ~ module ~ "/" ~ src.identifier ~ " not found under " ~ folder
                 ~ ": " ~ relation ~ " is empty, and so is every mart built from it ("
                 ~ src.meta.get('empty_means', 'no rows') ~ ").", info=True) }}
        {% else %}
          {{ exceptions.raise_compiler_error(
              "missing MIMIC-IV table " ~ module ~ "/" ~ src.identifier ~ ": expected " ~ folder ~ "/"
              ~ src.identifier ~ ".csv.gz (or .csv / .parquet). Check MIMIC_ROOT (now " ~ root
              ~ ") points at the folder holding hosp/ and icu/, and that the download finished.") }}
        {% endif %}
      {% else %}
        {% set path = found.rows[0][0] %}
        {% if path.endswith('.parquet') %}
          {% set reader = "read_parquet('" ~ path ~ "')" %}
        {% else %}
          {% set reader = "read_csv('" ~ path ~ "', header = true, all_varchar = true, delim = ',', quote = '\"', escape = '\"'" ~ (', ' ~ opts if opts else '') ~ ")" %}
        {% endif %}
        {% do run_query('create or replace view ' ~ relation ~ ' as select * from ' ~ reader) %}
        {% set check = declared_columns_missing(src, relation) %}
        {% set actual, missing = check.actual, check.missing %}
        {% if missing %}
          {% do run_query('drop view ' ~ relation) %}
          {{ exceptions.raise_compiler_error(
              "file " ~ path ~ " lacks column(s) " ~ missing | join(', ') ~ " (it has: " ~ actual | join(', ')
              ~ "). The file may be from another release or was edited; restore the PhysioNet original, "
              ~ "or rename the column(s) back.") }}
        {% endif %}
        {% if run_query("select count(*) from (select 1 from " ~ relation ~ " limit 1)").rows[0][0] == 0 %}
          {% do run_query('drop view ' ~ relation) %}
          {{ exceptions.raise_compiler_error(
              "file " ~ path ~ " (MIMIC-IV table " ~ module ~ "/" ~ src.identifier ~ ") has a header but no rows. "
              ~ "The download or conversion was cut short: download it again and check it against SHA256SUMS.txt"
              ~ (", or remove the file (the table is optional)" if src.meta.get('optional', false) else "") ~ ".") }}
        {% endif %}
      {% endif %}
    {% endfor %}
  {% endif %}
{% endmacro %}
