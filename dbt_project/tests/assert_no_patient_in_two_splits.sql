-- A patient has exactly one split, and every admission's patient has one.
select subject_id, count(distinct split) as n_splits
from {{ ref('dim_splits') }}
group by subject_id
having count(distinct split) != 1
union all
select a.subject_id, 0
from {{ ref('dim_admissions') }} a
left join {{ ref('dim_splits') }} s using (subject_id)
where s.subject_id is null
