-- Evidence-graph nodes: one row per entity seen in at least var('evidence_min_node_admissions') admissions of
-- TRAIN-split patients (marts.dim_splits). Val and test patients never contribute, so the graph that reasoning
-- prompts show holds no fact learnt from a held-out patient.
with train_admissions as (
    select a.hadm_id, a.subject_id
    from {{ ref('dim_admissions') }} a
    join {{ ref('dim_splits') }} s using (subject_id)
    where s.split = 'train'
),
totals as (
    select count(*) as n_train_admissions from train_admissions
),
entity_admissions as (
    select distinct e.entity_id, e.entity_type, e.entity_label, e.hadm_id, e.subject_id
    from {{ ref('fct_entity_events') }} e
    join train_admissions t using (hadm_id)
)
select
    ea.entity_id,
    ea.entity_type,
    ea.entity_label,
    count(*) as n_admissions,
    count(distinct ea.subject_id) as n_patients,
    count(*) / any_value(t.n_train_admissions) as admission_share,
    any_value(t.n_train_admissions) as n_train_admissions
from entity_admissions ea
cross join totals t
group by ea.entity_id, ea.entity_type, ea.entity_label
having count(*) >= {{ var('evidence_min_node_admissions') }}
