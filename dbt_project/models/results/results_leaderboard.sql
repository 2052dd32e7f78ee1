-- Leaderboard: every evaluated model per spec (and version), data version, task and metric, with the bootstrap
-- 95% CI computed in Python (evaluation.task_metrics) and its rank among the models scored on the same items.
-- Only finished runs count: evaluation.eval_runs is written last by `make evaluate`.
with runs as (
    select * from {{ source('evaluation', 'eval_runs') }}
    where status = 'succeeded'
),

task_metrics as (
    select * from {{ source('evaluation', 'task_metrics') }}
),

joined as (
    select
        r.run_id || '|' || m.task || '|' || m.metric as leaderboard_key,
        r.spec_name,
        r.spec_version,
        r.dataset,
        r.split,
        r.data_version,
        m.task,
        m.metric,
        m.aggregation,
        m.higher_is_better,
        r.model_name,
        r.model_kind,
        r.model_path,
        r.adapter_path,
        r.base_model_path,
        r.training_run_id,
        r.run_id,
        m.value,
        m.ci_low,
        m.ci_high,
        m.n_items,
        m.n_bootstrap,
        r.finished_at as evaluated_at
    from runs r
    inner join task_metrics m
        on m.run_id = r.run_id
)

select
    *,
    case when value is null then null else
        rank() over (
            partition by spec_name, spec_version, data_version, task, metric, (value is null)
            order by case when higher_is_better then -value else value end
        )
    end as rank_in_task,
    count(*) over (partition by spec_name, spec_version, data_version, task, metric) as n_models
from joined
