-- Split shares are within 10 percentage points of the configured ratios (hash buckets on >= 100 patients).
with shares as (
    select split, count(*) * 1.0 / sum(count(*)) over () as share from {{ ref('dim_splits') }} group by split
),
target as (
    select 'train' as split, {{ var('split_train') }} as ratio
    union all select 'val', {{ var('split_val') }}
    union all select 'test', {{ 1 - var('split_train') - var('split_val') }}
)
select t.split, t.ratio, coalesce(s.share, 0) as share
from target t left join shares s using (split)
where abs(coalesce(s.share, 0) - t.ratio) > 0.10 and t.ratio > 0
