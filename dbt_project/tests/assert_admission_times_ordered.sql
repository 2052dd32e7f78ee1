-- Admissions whose discharge precedes their admission. Real MIMIC-IV has a few: the build must not stop for them,
-- so this test only warns, with their count; dim_admissions flags them (is_dischtime_before_admittime) and
-- fct_outcomes gives them no time-based label.
{{ config(severity='warn') }}
select hadm_id, subject_id, admittime, dischtime
from {{ ref('dim_admissions') }}
where dischtime < admittime
