-- dim_admissions.is_readmitted_30d and fct_outcomes (readmission_30d) come from one rule
-- (int_admissions_sequenced): every labelled admission has exactly its label as an outcome instance, and no
-- unlabelled one (in-hospital death, continuation) is an instance. Returns the admissions where they disagree.
with o as (
    select hadm_id, label from {{ ref('fct_outcomes') }} where task = 'readmission_30d'
)
select a.hadm_id, a.is_readmitted_30d, o.label
from {{ ref('dim_admissions') }} a
full outer join o using (hadm_id)
where a.is_readmitted_30d is distinct from o.label
