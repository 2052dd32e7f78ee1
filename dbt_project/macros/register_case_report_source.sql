{#-
  Register the public case reports (PMC-Patients, Zhao et al. 2023, CC BY-NC-SA 4.0) as the view raw_pmc.patients
  before the build. The file comes from $PMC_PATIENTS_CSV: the 500-report sample in ../shared/data for the demo,
  the full PMC-Patients CSV (PMC-Patients.csv, ~167k reports, same columns) for users. Optional: with the variable
  unset the view is empty (so is marts.dim_case_reports) and the build says so; set but pointing at no file, or a
  file without the declared columns, stops the build here naming the file and the fix.
  Only runs when the selection reads the source (like register_mimic_sources).
-#}
{% macro register_case_report_source() %}
  {% if execute and flags.WHICH in ('build', 'run', 'test', 'seed', 'compile', 'show') %}
    {% set srcs = graph.sources.values() | selectattr('source_meta.case_reports_env', 'defined') | list %}
    {% set reads = selection_reads_raw_files('case_reports_env') %}
    {% for src in srcs if reads %}
      {% set var_name = src.source_meta.case_reports_env %}
      {% set path = env_var(var_name, '') %}
      {% set relation = src.schema ~ '.' ~ src.identifier %}
      {% do run_query('create schema if not exists ' ~ src.schema) %}
      {% if not path %}
        {% set cols = [] %}
        {% for c in src.columns.values() %}
          {% do cols.append("cast(null as varchar) as " ~ c.name) %}
        {% endfor %}
        {% do run_query('create or replace view ' ~ relation ~ ' as select ' ~ cols | join(', ') ~ ' where false') %}
        {{ log("ehrforge: " ~ var_name ~ " is not set: " ~ relation ~ " and marts.dim_case_reports are empty "
               ~ "(no case reports for the case_report_note synthesis task).", info=True) }}
      {% else %}
        {% set found = run_query("select count(*) from glob('" ~ path ~ "')").rows[0][0] %}
        {% if found == 0 %}
          {{ exceptions.raise_compiler_error(
              var_name ~ "=" ~ path ~ " is not a file. Point it at the PMC-Patients CSV (the demo sample is "
              ~ "../shared/data/pmc-patients-sample/pmc_patients_sample.csv; the full set is PMC-Patients.csv), "
              ~ "or unset it to build without case reports.") }}
        {% endif %}
        {% do run_query("create or replace view " ~ relation ~ " as select * from read_csv('" ~ path
                        ~ "', header = true, all_varchar = true, delim = ',', quote = '\"', escape = '\"')") %}
        {% set check = declared_columns_missing(src, relation) %}
        {% set actual, missing = check.actual, check.missing %}
        {% if missing %}
          {% do run_query('drop view ' ~ relation) %}
          {{ exceptions.raise_compiler_error(
              "file " ~ path ~ " (" ~ var_name ~ ") lacks column(s) " ~ missing | join(', ') ~ " (it has: "
              ~ actual | join(', ') ~ "); expected the PMC-Patients CSV layout (patient_id, patient_uid, PMID, "
              ~ "title, text, age, gender, ...).") }}
        {% endif %}
      {% endif %}
    {% endfor %}
  {% endif %}
{% endmacro %}
