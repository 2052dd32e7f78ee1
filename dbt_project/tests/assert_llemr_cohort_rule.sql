-- Rows flagged into the LLemr cohort satisfy every inclusion criterion.
select hadm_id from {{ ref('dim_admissions') }}
where is_llemr_cohort
  and not (n_icu_stays = {{ var('llemr_n_icu_stays') }}
           and age_at_admission >= {{ var('cohort_min_age') }}
           and los_days >= 0
           {% if var('llemr_require_note') %} and n_discharge_notes > 0 {% endif %})
