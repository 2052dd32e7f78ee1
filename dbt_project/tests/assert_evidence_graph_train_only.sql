-- The evidence graph learns from train-split patients only: every node's admission count equals its count over
-- train admissions, and every pair's co-occurrence count equals its count over train admissions. A val or test
-- admission contributing anywhere makes a count larger and returns a row here.
with train_entities as (
    select distinct e.entity_id, e.hadm_id
    from {{ ref('fct_entity_events') }} e
    join {{ ref('dim_splits') }} s using (subject_id)
    where s.split = 'train'
),
node_counts as (
    select entity_id, count(*) as n from train_entities group by entity_id
),
pair_counts as (
    select p.pair_id, count(*) as n
    from {{ ref('fct_evidence_pairs') }} p
    join train_entities a on a.entity_id = p.antecedent_id
    join train_entities b on b.entity_id = p.consequent_id and b.hadm_id = a.hadm_id
    group by p.pair_id
),
train_total as (
    select count(*) as n
    from {{ ref('dim_admissions') }} a join {{ ref('dim_splits') }} s using (subject_id)
    where s.split = 'train'
)
select n.entity_id as id, 'node' as kind, n.n_admissions as counted, c.n as train_count
from {{ ref('dim_evidence_nodes') }} n
left join node_counts c using (entity_id)
where c.n is null or c.n <> n.n_admissions
union all
select n.entity_id, 'node_total', n.n_train_admissions, t.n
from {{ ref('dim_evidence_nodes') }} n cross join train_total t
where n.n_train_admissions <> t.n
union all
select p.pair_id, 'pair', p.n_admissions, c.n
from {{ ref('fct_evidence_pairs') }} p
left join pair_counts c using (pair_id)
where c.n is null or c.n <> p.n_admissions
