-- Public case reports (PMC-Patients) for the Asclepius route: case report -> synthetic discharge summary.
-- Kweon et al., "Publicly Shareable Clinical Large Language Model Built on Synthetic Clinical Notes" (2024).
-- The split is made here, once, like dim_splits: by the case report's article (PMID), so the several patients of
-- one report never fall into two splits. Range guard: a report shorter than 200 characters has too little to
-- write a discharge summary from (kept, flagged).
with reports as (
    select * from {{ ref('stg_pmc_patients__case_reports') }}
    where case_text is not null
),
bucketed as (
    select
        *,
        cast(md5_number('{{ var("split_seed") }}:pmid:' || coalesce(cast(pmid as varchar), case_report_id)) % 10000
             as integer) / 10000.0 as split_bucket
    from reports
)
select
    case_report_id,
    pmc_patient_id,
    pmid,
    title,
    case_text,
    length(case_text) as n_chars,
    length(case_text) >= 200 as is_long_enough,
    age_years,
    gender,
    case
        when split_bucket < {{ var('split_train') }} then 'train'
        when split_bucket < {{ var('split_train') + var('split_val') }} then 'val'
        else 'test'
    end as split,
    'public' as provenance
from bucketed
