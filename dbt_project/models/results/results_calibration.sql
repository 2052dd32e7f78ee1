-- Calibration: the reliability diagram of every finished run's yes/no tasks (evaluation.calibration_bins: 10
-- equal-width bins of P("yes")), next to the task's Brier score and expected calibration error with their bootstrap
-- 95% CIs (evaluation.task_metrics, metrics `brier` and `ece`). A calibrated model has observed_rate close to
-- mean_predicted in every bin.
with runs as (
    select * from {{ source('evaluation', 'eval_runs') }}
    where status = 'succeeded'
),

bins as (
    select * from {{ source('evaluation', 'calibration_bins') }}
),

figures as (
    select
        run_id,
        task,
        max(value) filter (where metric = 'brier') as brier,
        max(ci_low) filter (where metric = 'brier') as brier_ci_low,
        max(ci_high) filter (where metric = 'brier') as brier_ci_high,
        max(value) filter (where metric = 'ece') as ece,
        max(ci_low) filter (where metric = 'ece') as ece_ci_low,
        max(ci_high) filter (where metric = 'ece') as ece_ci_high
    from {{ source('evaluation', 'task_metrics') }}
    where metric in ('brier', 'ece')
    group by 1, 2
)

select
    r.run_id || '|' || b.task || '|' || b.bin_index as calibration_key,
    r.spec_name,
    r.spec_version,
    r.dataset,
    r.split,
    r.data_version,
    r.model_name,
    r.model_kind,
    r.run_id,
    b.task,
    b.bin_index,
    b.bin_low,
    b.bin_high,
    b.n_items,
    b.mean_predicted,
    b.observed_rate,
    b.observed_rate - b.mean_predicted as calibration_gap,
    cast(sum(b.n_items) over (partition by r.run_id, b.task) as integer) as n_task_items,
    f.brier,
    f.brier_ci_low,
    f.brier_ci_high,
    f.ece,
    f.ece_ci_low,
    f.ece_ci_high,
    r.finished_at as evaluated_at
from runs r
inner join bins b
    on b.run_id = r.run_id
left join figures f
    on f.run_id = r.run_id
    and f.task = b.task
