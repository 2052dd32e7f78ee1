"""The real chain on the demo, run once per test session (fixture `demo_chain` in tests/conftest.py):

    dbt build  ->  synthesize (demo config, twice)  ->  train a tiny LoRA (training.launch)  ->  evaluate (+ marts)

with the repository's own configs and small overrides. The synthesis, training, evaluation and report tests read
its outputs; a test that writes copies the warehouse first (fixture `chain_copy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATASET = "demo"
SYNTH_CONFIG = "synthesis/configs/demo.yaml"
TRAIN_CONFIG = "training/configs/demo/tiny_lora.yaml"
TRAIN_RUN_NAME = "demo-tiny-lora"  # the `name` of TRAIN_CONFIG
TRAIN_OVERRIDES = ["train.max_steps=30", "train.eval_steps=15", "train.save_steps=15", "train.logging_steps=5"]


def synth_overrides(tmp: Path) -> list[str]:
    return [
        "progress=false",  # deterministic tasks: the demo config's quotas over all 119 LLemr admissions
        "tasks.note_generation.generate_n=2",
        "tasks.note_qa.quota=8", "tasks.note_reasoning_qa.quota=4", "tasks.question_paraphrase.quota=6",
        "tasks.note_qa.note_max_chars=1200", "tasks.note_reasoning_qa.note_max_chars=1200",
        f"generator.llm.model={tmp}/tiny-llama", f"export_dir={tmp}/export",
    ]


def eval_spec(**over):
    """The chain's evaluation: the LoRA and its base on a seeded subset of the test split, with the judge."""
    from evaluation.spec import EvalSpec

    base = {"name": "tiny-base", "kind": "base", "training_run_id": "latest", "training_run_name": TRAIN_RUN_NAME}
    body = {
        "name": "chain", "version": 1,
        "data": {"dataset": DATASET, "split": "test", "subset": {"n_per_task": 6, "seed": 0}},
        "models": [
            {"name": "tiny-lora", "kind": "adapter", "training_run_id": "latest", "training_run_name": TRAIN_RUN_NAME},
            base,
        ],
        "generation": {"max_new_tokens": 16, "batch_size": 16},
        "metrics": {"note_generation": ["rouge5", "ngram8_overlap", "rouge_l"]},
        "judge": {"enabled": True, "jury": [base], "max_items": 2, "max_retries": 1, "max_new_tokens": 24},
        "bootstrap": {"n": 200, "seed": 0},
    }
    body.update(over)
    return EvalSpec.model_validate(body)


@dataclass(frozen=True)
class DemoChain:
    warehouse: Path            # after every step; read it, or copy it (fixture chain_copy) before writing
    runs: Path                 # EHRFORGE_RUNS of the chain (tiny model, adapter)
    tmp: Path
    synth_config: object
    synth_first: dict          # synthesize() of the first run
    synth_second: dict         # ... and of the second, which must change nothing
    train_run_id: str
    train_summary: dict
    eval_summaries: list       # evaluation.runner.ModelSummary per model of eval_spec()
