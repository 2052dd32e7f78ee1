-- One row per patient: the train/val/test split, made once here and joined by every downstream row.
-- Deterministic: a patient's bucket is md5(seed || ':' || subject_id) mod 10000, so adding patients
-- never moves existing ones, and the same seed gives the same split on every machine.
with patients as (
    select subject_id from {{ ref('stg_mimic_hosp__patients') }}
),
bucketed as (
    select
        subject_id,
        cast(md5_number('{{ var("split_seed") }}:' || subject_id) % 10000 as integer) / 10000.0 as split_bucket
    from patients
)
select
    subject_id,
    split_bucket,
    case
        when split_bucket < {{ var('split_train') }} then 'train'
        when split_bucket < {{ var('split_train') + var('split_val') }} then 'val'
        else 'test'
    end as split,
    {{ var('split_seed') }} as split_seed
from bucketed
