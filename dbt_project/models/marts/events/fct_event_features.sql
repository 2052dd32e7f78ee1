-- LLemr's per-event features: the event's description id (its vector is in embeddings.event_descriptions), the time
-- since admission and the numeric value normalised per description (z-score, clipped to [-5, 5]) with mean and
-- standard deviation from TRAIN-split patients only. Events inside their admission only (what synthesis renders).
with events as (
    select
        e.event_id, e.subject_id, e.hadm_id, e.event_time, e.event_type, e.item_label, e.hours_since_admit,
        {{ event_description_id('e.event_type', 'e.item_label', 'e.unit') }} as description_id,
        case when not e.is_implausible then e.value_num end as value_num
    from {{ ref('fct_events') }} e
    where e.window_status = 'in_admission' and e.hadm_id is not null
),
train_stats as (
    -- range-guarded values of train patients only: val/test values never shape the scaling. Exact decimal sums, so
    -- the statistics (and value_norm) do not depend on the order parallel threads add doubles in.
    select ev.description_id, count(*) as n_train_values,
           sum(cast(ev.value_num as decimal(38, 6))) as sum_x,
           sum(cast(ev.value_num as decimal(38, 6)) * cast(ev.value_num as decimal(38, 6))) as sum_xx
    from events ev
    join {{ ref('dim_splits') }} s using (subject_id)
    where s.split = 'train' and ev.value_num is not null and abs(ev.value_num) < 1e9  -- decimal(38, 6) squares fit
    group by 1
),
train_scaling as (
    select description_id, n_train_values,
           cast(sum_x as double) / n_train_values as train_mean,
           sqrt(greatest(cast(sum_xx as double) / n_train_values
                         - (cast(sum_x as double) / n_train_values) ^ 2, 0)) as train_std
    from train_stats
)
select
    ev.event_id,
    ev.subject_id,
    ev.hadm_id,
    ev.event_time,
    ev.event_type,
    ev.description_id,
    ev.hours_since_admit,
    ev.value_num,
    ev.value_num is not null as has_value,
    case
        when ev.value_num is null then null
        when t.train_std is null or t.train_std < 1e-9 then 0.0
        else greatest(-5.0, least(5.0, (ev.value_num - t.train_mean) / t.train_std))
    end as value_norm,
    s.split
from events ev
join {{ ref('dim_splits') }} s using (subject_id)
left join train_scaling t using (description_id)
