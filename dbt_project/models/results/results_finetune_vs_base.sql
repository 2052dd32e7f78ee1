-- Fine-tune against its base: each adapter / merged run next to the base-model run of the same spec version and
-- data version whose model is the fine-tune's base (eval_runs.base_model_path). Task figures and CIs come from
-- evaluation.task_metrics; the paired counts compare the two models item by item on per-item metrics.
with runs as (
    select * from {{ source('evaluation', 'eval_runs') }}
    where status = 'succeeded'
),

task_metrics as (
    select * from {{ source('evaluation', 'task_metrics') }}
),

scores as (
    select * from {{ source('evaluation', 'scores') }}
),

comparisons as (
    select * from {{ source('evaluation', 'comparisons') }}
),

pairs as (
    select
        ft.run_id as finetune_run_id,
        b.run_id as base_run_id,
        ft.spec_name,
        ft.spec_version,
        ft.dataset,
        ft.data_version,
        ft.model_name as finetune_model,
        ft.model_kind as finetune_kind,
        ft.training_run_id,
        b.model_name as base_model,
        ft.base_model_path
    from runs ft
    inner join runs b
        on b.model_kind = 'base'
        and b.model_path = ft.base_model_path
        and b.spec_name = ft.spec_name
        and b.spec_version = ft.spec_version
        and b.data_version = ft.data_version
        and b.split = ft.split
    where ft.model_kind in ('adapter', 'merged')
),

paired_items as (
    -- per-item metrics only: a ranking metric's item value is a probability, not a score
    select
        p.finetune_run_id,
        f.task,
        f.metric,
        count(*) as n_paired,
        count(*) filter (where f.value > s.value) as n_finetune_higher,
        count(*) filter (where f.value < s.value) as n_base_higher,
        count(*) filter (where f.value = s.value) as n_tied
    from pairs p
    inner join scores f
        on f.run_id = p.finetune_run_id
    inner join scores s
        on s.run_id = p.base_run_id
        and s.instruction_id = f.instruction_id
        and s.metric = f.metric
    inner join task_metrics tm
        on tm.run_id = p.finetune_run_id and tm.task = f.task and tm.metric = f.metric
    where tm.aggregation = 'mean'
        and f.value is not null
        and s.value is not null
    group by 1, 2, 3
)

select
    p.finetune_run_id || '|' || fm.task || '|' || fm.metric as comparison_key,
    p.spec_name,
    p.spec_version,
    p.dataset,
    p.data_version,
    fm.task,
    fm.metric,
    fm.higher_is_better,
    p.finetune_model,
    p.finetune_kind,
    p.training_run_id,
    p.base_model,
    p.finetune_run_id,
    p.base_run_id,
    fm.value as finetune_value,
    fm.ci_low as finetune_ci_low,
    fm.ci_high as finetune_ci_high,
    bm.value as base_value,
    bm.ci_low as base_ci_low,
    bm.ci_high as base_ci_high,
    fm.value - bm.value as delta,
    case
        when fm.value is null or bm.value is null then null
        when fm.value = bm.value then false
        else (fm.value > bm.value) = fm.higher_is_better
    end as is_improved,
    -- disjoint 95% intervals: a conservative sign that the difference is not resampling noise
    case
        when fm.ci_low is null or bm.ci_low is null then null
        else fm.ci_low > bm.ci_high or bm.ci_low > fm.ci_high
    end as is_ci_disjoint,
    -- paired bootstrap (same items resampled for both models): the interval of the difference itself
    c.delta_ci_low,
    c.delta_ci_high,
    case
        when c.delta_ci_low is null then null
        else c.delta_ci_low > 0 or c.delta_ci_high < 0
    end as is_delta_significant,
    fm.n_items,
    pi.n_paired,
    pi.n_finetune_higher,
    pi.n_base_higher,
    pi.n_tied
from pairs p
inner join task_metrics fm
    on fm.run_id = p.finetune_run_id
inner join task_metrics bm
    on bm.run_id = p.base_run_id
    and bm.task = fm.task
    and bm.metric = fm.metric
left join comparisons c
    on c.finetune_run_id = p.finetune_run_id
    and c.base_run_id = p.base_run_id
    and c.task = fm.task
    and c.metric = fm.metric
left join paired_items pi
    on pi.finetune_run_id = p.finetune_run_id
    and pi.task = fm.task
    and pi.metric = fm.metric
