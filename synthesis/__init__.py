"""Instruction data from the warehouse marts: registered task families, one `synthesis.instructions` table.

    make synthesize CONFIG=synthesis/configs/demo.yaml      # = python -m synthesis.cli --config ...

Every row carries its lineage (event ids / outcome id / note id, time window, template id, prompt hash, generator
model, seed) and the split of its patient (marts.dim_splits). See the README, section "Synthesis".
"""

INSTRUCTIONS_TABLE = "synthesis.instructions"
LLM_OUTPUTS_TABLE = "synthesis.llm_outputs"
NOTE_REPORT_TABLE = "synthesis.note_generation_report"
# Tables beside the instructions: tasks append row dicts to BuildContext.extra_tables[table]; the CLI writes them.
EXTRA_TABLE_COLUMNS = {
    LLM_OUTPUTS_TABLE: ["dataset", "task", "request_id", "source_id", "prompt_hash", "cache_key", "cached", "raw_text",
                        "status", "reject_reason", "instruction_id"],
    NOTE_REPORT_TABLE: ["dataset", "scope", "metric", "value", "detail"],
}

