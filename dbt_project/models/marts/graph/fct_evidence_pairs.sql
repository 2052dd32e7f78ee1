-- Evidence-graph edges: one row per ordered pair (antecedent -> consequent) of nodes that co-occur within an
-- admission of TRAIN-split patients, as an association rule (Agrawal et al. 1993):
--   support    = n_admissions(A and B) / n_train_admissions
--   confidence = n_admissions(A and B) / n_admissions(A)             (directional: P(B | A))
--   lift       = confidence / (n_admissions(B) / n_train_admissions) (> 1: together more often than by chance)
-- Kept when the pair occurs in >= var('evidence_min_pair_admissions') admissions of >= var('evidence_min_pair_patients')
-- patients, with confidence >= var('evidence_min_confidence') and lift >= var('evidence_min_lift').
with train_admissions as (
    select a.hadm_id, a.subject_id
    from {{ ref('dim_admissions') }} a
    join {{ ref('dim_splits') }} s using (subject_id)
    where s.split = 'train'
),
nodes as (
    select * from {{ ref('dim_evidence_nodes') }}
),
entity_admissions as (
    select distinct e.entity_id, e.hadm_id, t.subject_id
    from {{ ref('fct_entity_events') }} e
    join train_admissions t using (hadm_id)
    join nodes n using (entity_id)
),
co_occurring as (
    select
        a.entity_id as antecedent_id,
        b.entity_id as consequent_id,
        count(*) as n_admissions,
        count(distinct a.subject_id) as n_patients
    from entity_admissions a
    join entity_admissions b on a.hadm_id = b.hadm_id and a.entity_id <> b.entity_id
    group by a.entity_id, b.entity_id
    having count(*) >= {{ var('evidence_min_pair_admissions') }}
       and count(distinct a.subject_id) >= {{ var('evidence_min_pair_patients') }}
),
scored as (
    select
        md5(c.antecedent_id || '>' || c.consequent_id) as pair_id,
        c.antecedent_id,
        na.entity_type as antecedent_type,
        na.entity_label as antecedent_label,
        c.consequent_id,
        nb.entity_type as consequent_type,
        nb.entity_label as consequent_label,
        c.n_admissions,
        c.n_patients,
        c.n_admissions / na.n_train_admissions as support,
        c.n_admissions / na.n_admissions as confidence,
        (c.n_admissions / na.n_admissions) / (nb.n_admissions / nb.n_train_admissions) as lift
    from co_occurring c
    join nodes na on na.entity_id = c.antecedent_id
    join nodes nb on nb.entity_id = c.consequent_id
)
select *
from scored
where confidence >= {{ var('evidence_min_confidence') }}
  and lift >= {{ var('evidence_min_lift') }}
