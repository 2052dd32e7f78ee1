-- The Python task figures (evaluation.task_metrics) must agree with the per-item scores they came from: for every
-- mean-aggregated metric, value = avg(scores.value) over the run's non-null item values of that task.
select m.run_id, m.task, m.metric, m.value, avg(s.value) as sql_mean
from {{ source('evaluation', 'task_metrics') }} m
inner join {{ source('evaluation', 'scores') }} s
    on s.run_id = m.run_id and s.task = m.task and s.metric = m.metric
where m.aggregation = 'mean'
group by 1, 2, 3, 4
having abs(coalesce(m.value, -1) - coalesce(avg(s.value), -1)) > 1e-9
