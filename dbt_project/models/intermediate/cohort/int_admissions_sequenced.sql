-- Admissions in order per patient, and the one 30-day readmission rule of the project: dim_admissions
-- (is_readmitted_30d) and fct_outcomes (task readmission_30d) both read it from here.
--
-- Rule: the next admission of the same patient is a readmission when it starts at least
-- var('readmission_continuation_hours') hours and at most var('readmission_days') days after discharge.
-- A next admission that starts earlier (or overlaps the stay) continues the same episode of care: in MIMIC-IV
-- these are back-to-back registrations (a new hadm_id opened from the same ED visit) and internal transfers
-- (admission_location 'INTERNAL TRANSFER TO OR FROM PSYCH'), on the demo 0, 1 and 15 minutes after discharge.
-- As in the CMS 30-day readmission measures (Hospital-Wide All-Cause Unplanned Readmission methodology, Yale
-- CORE for CMS), a transfer chain is one episode and only its last admission is an index admission: an
-- admission followed by a continuation gets no readmission label (NULL), and the continuation is judged on
-- its own discharge. Readmission is also NULL after an in-hospital death, and for an admission whose dischtime
-- precedes its admittime (impossible times: no time-based label, see dim_admissions.is_dischtime_before_admittime). The gap of a few hours is this
-- project's choice for one hospital's data (CMS links transfers between hospitals by same or next day).
{% set gap_h = var('readmission_continuation_hours') %}
with admissions as (
    select subject_id, hadm_id, admittime, dischtime, deathtime, hospital_expire_flag
    from {{ ref('stg_mimic_hosp__admissions') }}
),
sequenced as (
    select
        *,
        row_number() over w as admission_seq,
        lead(hadm_id) over w as next_hadm_id,
        lead(admittime) over w as next_admittime
    from admissions
    window w as (partition by subject_id order by admittime, hadm_id)
),
flagged as (
    select
        *,
        date_diff('second', dischtime, next_admittime) / 86400.0 as days_to_next_admission,
        deathtime is not null or coalesce(hospital_expire_flag, false) as is_in_hospital_death,
        coalesce(next_admittime < dischtime + to_hours({{ gap_h }}), false) as is_followed_by_continuation
    from sequenced
)
select
    subject_id,
    hadm_id,
    admission_seq,
    next_hadm_id,
    next_admittime,
    days_to_next_admission,
    is_in_hospital_death,
    is_followed_by_continuation,
    case
        when is_in_hospital_death or is_followed_by_continuation or dischtime < admittime then null
        else coalesce(next_admittime <= dischtime + to_days({{ var('readmission_days') }}), false)
    end as is_readmitted_30d
from flagged
