-- LLemr event descriptions (Wu et al., "Instruction tuning large language models to understand electronic health
-- records", NeurIPS 2024 Datasets & Benchmarks): one text per distinct (event type, item label, unit), embedded once
-- by `make embed-events` into embeddings.event_descriptions. Thousands of rows, not millions: an event's vector is
-- looked up by description_id, never stored per event.
select
    {{ event_description_id('event_type', 'item_label', 'unit') }} as description_id,
    min({{ event_description('event_type', 'item_label', 'unit') }}) as description,
    min(event_type) as event_type,
    min(item_label) as item_label,
    min(nullif(trim(unit), '')) as unit,
    count(*) as n_events
from {{ ref('fct_events') }}
group by 1
