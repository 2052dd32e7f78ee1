-- Every outcome is known only after its prediction time (no label leakage through time).
select * from {{ ref('fct_outcomes') }}
where not (prediction_time < outcome_time)
