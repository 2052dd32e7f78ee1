-- ICD-coding utility of synthetic notes (SynthNote: Lee et al.-style downstream test): per run and metric, the coder
-- trained on real notes, on synthetic notes of the same admissions, and on every real train note, side by side.
-- synthetic_minus_real < 0: the synthetic notes carry less coding signal than the real ones they stand in for.
with utility as (
    select * from {{ source('icd_utility', 'icd_utility') }}
),

pivoted as (
    select
        run_id,
        dataset,
        metric,
        max(value) filter (where arm = 'real') as real_value,
        max(value) filter (where arm = 'synthetic') as synthetic_value,
        max(value) filter (where arm = 'real_all') as real_all_value,
        max(n_train_notes) filter (where arm = 'synthetic') as n_synthetic_train_notes,
        max(n_train_notes) filter (where arm = 'real_all') as n_real_train_notes,
        max(n_test_notes) as n_test_notes,
        max(n_codes) as n_codes,
        max(created_at) as created_at
    from utility
    group by run_id, dataset, metric
)

select
    run_id || '|' || metric as utility_key,
    *,
    synthetic_value - real_value as synthetic_minus_real
from pivoted
