-- Subgroups: every finished run's task figures per subgroup of sex, age band, race and insurance (evaluation.
-- subgroup_metrics, bootstrap 95% CIs). Within an attribute, the gap is best minus worst ranked subgroup (ranked:
-- at least subgroups.min_items items and a value) in the metric's direction; the attribute with the largest gap
-- of a run, task and metric is flagged (is_largest_gap), and is_gap_ci_disjoint says whether the best and the
-- worst subgroup's intervals do not overlap (a conservative sign the gap is not resampling noise).
with runs as (
    select * from {{ source('evaluation', 'eval_runs') }}
    where status = 'succeeded'
),

sub as (
    select * from {{ source('evaluation', 'subgroup_metrics') }}
),

oriented as (
    -- score: higher is better in every metric's own direction
    select *, case when higher_is_better then value else -value end as score
    from sub
),

per_attribute as (
    select
        *,
        max(score) filter (where is_ranked) over w as best_score,
        min(score) filter (where is_ranked) over w as worst_score,
        arg_max(ci_low, score) filter (where is_ranked) over w as best_ci_low,
        arg_max(ci_high, score) filter (where is_ranked) over w as best_ci_high,
        arg_min(ci_low, score) filter (where is_ranked) over w as worst_ci_low,
        arg_min(ci_high, score) filter (where is_ranked) over w as worst_ci_high,
        count(*) filter (where is_ranked) over w as n_ranked_subgroups
    from oriented
    window w as (partition by run_id, task, metric, attribute)
),

gaps as (
    select
        *,
        case when n_ranked_subgroups >= 2 then best_score - worst_score end as attribute_gap
    from per_attribute
),

flagged as (
    select
        *,
        max(attribute_gap) over (partition by run_id, task, metric) as largest_gap
    from gaps
)

select
    f.run_id || '|' || f.task || '|' || f.metric || '|' || f.attribute || '|' || f.subgroup as subgroup_key,
    r.spec_name,
    r.spec_version,
    r.dataset,
    r.split,
    r.data_version,
    r.model_name,
    r.model_kind,
    f.run_id,
    f.task,
    f.metric,
    f.aggregation,
    f.higher_is_better,
    f.attribute,
    f.subgroup,
    f.value,
    f.ci_low,
    f.ci_high,
    f.n_items,
    f.is_ranked,
    f.n_ranked_subgroups,
    f.attribute_gap,
    coalesce(f.is_ranked and f.n_ranked_subgroups >= 2 and f.score = f.worst_score, false) as is_worst_subgroup,
    coalesce(f.is_ranked and f.n_ranked_subgroups >= 2 and f.score = f.best_score, false) as is_best_subgroup,
    coalesce(f.attribute_gap > 0 and f.attribute_gap = f.largest_gap, false) as is_largest_gap,
    case
        when f.attribute_gap is null or f.best_ci_low is null or f.worst_ci_low is null then null
        else f.best_ci_low > f.worst_ci_high or f.worst_ci_low > f.best_ci_high
    end as is_gap_ci_disjoint,
    r.finished_at as evaluated_at
from flagged f
inner join runs r
    on r.run_id = f.run_id
