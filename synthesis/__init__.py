"""Instruction data from the warehouse marts: registered task families, one `synthesis.instructions` table.

    make synthesize CONFIG=synthesis/configs/demo.yaml      # = python -m synthesis.cli --config ...

Every row carries its lineage (event ids / outcome id / note id, time window, template id, prompt hash, generator
model, seed) and the split of its patient (marts.dim_splits). See the README, section "Synthesis".
"""

INSTRUCTIONS_TABLE = "synthesis.instructions"
LLM_OUTPUTS_TABLE = "synthesis.llm_outputs"
NOTE_REPORT_TABLE = "synthesis.note_generation_report"
# Tables beside the instructions: tasks append row dicts to BuildContext.extra_tables[table]; the CLI writes them.
# Their columns are declared once, in dbt_project/models/sources/_synthesis__sources.yml (ehrforge.tables).
SYNTHETIC_NOTES_TABLE = "synthesis.synthetic_notes"  # case_report_note's notes (public text only)
GENERATED_NOTES_TABLE = "synthesis.generated_notes"  # note_generation's notes from ICD codes (MIMIC-derived)
EXTRA_TABLES = (LLM_OUTPUTS_TABLE, NOTE_REPORT_TABLE, SYNTHETIC_NOTES_TABLE, GENERATED_NOTES_TABLE)

