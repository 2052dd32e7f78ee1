"""Warehouse records of training runs.

`training.runs`: one row per training run and stage (a cpt+sft run has a `cpt` row and an `sft` row).
`training.loss_curve`: one row per logged train loss / periodic val loss, per run, stage and step.
`training.reward_curve`: one row per logged GRPO figure (reward, per-function reward, KL, completion length, ...),
per run, stage and step.
All carry the run columns (run_id, created_at, code_version, config_hash) and are idempotent per run.
"""

from __future__ import annotations

import json
import logging

import pandas as pd

log = logging.getLogger(__name__)

RUNS_TABLE = "training.runs"
CURVE_TABLE = "training.loss_curve"
REWARD_CURVE_TABLE = "training.reward_curve"

RUN_FIELDS = [
    "stage", "method", "base_model", "base_model_path", "dataset", "data_source", "data_version",
    "n_train_examples", "n_val_examples", "n_dropped", "n_train_tokens", "n_train_label_tokens",
    "n_params", "n_trainable_params", "packing", "n_packs", "gradient_checkpointing", "chunked_loss", "liger",
    "dtype", "num_processes", "distributed_type", "steps", "epochs", "resumed_from", "first_train_loss",
    "final_train_loss", "mean_train_loss", "first_eval_loss", "final_eval_loss", "best_eval_loss",
    "real_tokens_trained", "tokens_per_s", "peak_memory_gb", "peak_memory_kind", "wall_s", "output_path",
    "merged_path", "config_json",
]


def runs_frame(cfg, meta: dict, summaries: list[dict]) -> pd.DataFrame:
    from ehrforge.config import config_json

    rows = []
    for s in summaries:
        row = {k: s.get(k) for k in RUN_FIELDS}
        row.update({
            "method": cfg.method,
            "base_model": cfg.model.base,
            "dataset": cfg.cpt.notes_table if s["stage"] == "cpt" else cfg.data.dataset,
            "data_source": meta.get(f"{s['stage']}_source"),
            "data_version": meta.get(f"{s['stage']}_data_version"),
            "config_json": config_json(cfg),
        })
        row["resumed_from"] = None if row["resumed_from"] is None else str(row["resumed_from"])
        rows.append(row)
    df = pd.DataFrame(rows, columns=RUN_FIELDS)
    # Explicit types: an all-null column would otherwise create a column of type NULL in DuckDB.
    types = dict.fromkeys(("n_packs", "n_train_examples", "n_val_examples", "n_dropped", "n_train_tokens",
                           "n_train_label_tokens", "n_params", "n_trainable_params", "num_processes", "steps",
                           "real_tokens_trained"), "Int64")
    types |= dict.fromkeys(("epochs", "first_train_loss", "final_train_loss", "mean_train_loss", "first_eval_loss",
                            "final_eval_loss", "best_eval_loss", "tokens_per_s", "peak_memory_gb", "wall_s"), "float64")
    types |= dict.fromkeys(("packing", "gradient_checkpointing", "chunked_loss", "liger"), "boolean")
    return df.astype({col: types.get(col, "string") for col in RUN_FIELDS})


def curve_frame(summaries: list[dict]) -> pd.DataFrame:
    rows = [{"stage": s["stage"], **r} for s in summaries for r in s.get("loss_curve", [])]
    df = pd.DataFrame(rows, columns=["stage", "step", "epoch", "split", "loss", "learning_rate"])
    return df.astype({"stage": "string", "step": "Int64", "epoch": "float64", "split": "string",
                      "loss": "float64", "learning_rate": "float64"})


def reward_curve_frame(summaries: list[dict]) -> pd.DataFrame:
    rows = [{"stage": s["stage"], **r} for s in summaries for r in s.get("reward_curve", [])]
    df = pd.DataFrame(rows, columns=["stage", "step", "metric", "value"])
    return df.astype({"stage": "string", "step": "Int64", "metric": "string", "value": "float64"})


def open_run(cfg, run_id: str) -> None:
    """Register the run in meta.runs as `running` before any work, so an error can mark it failed."""
    from ehrforge import warehouse

    with warehouse.session(wait_s=30) as con:
        warehouse.start_run(con, job="train", config=cfg, run_id=run_id)


def write_records(cfg, meta: dict, summaries: list[dict], run_id: str) -> None:
    """Write both tables for a finished run (one transaction each; replaces rows of the same run)."""
    from ehrforge import warehouse

    with warehouse.session(wait_s=30) as con:
        run = warehouse.start_run(con, job="train", config=cfg, run_id=run_id)
        warehouse.write_table(con, RUNS_TABLE, runs_frame(cfg, meta, summaries), run)
        warehouse.write_table(con, CURVE_TABLE, curve_frame(summaries), run)
        rewards = reward_curve_frame(summaries)
        if len(rewards) or warehouse.table_exists(con, REWARD_CURVE_TABLE):
            warehouse.write_table(con, REWARD_CURVE_TABLE, rewards, run)
        warehouse.finish_run(con, run)
    log.info("recorded run %s in %s and %s", run_id, RUNS_TABLE, CURVE_TABLE)


def summary_text(run_id: str, summaries: list[dict]) -> str:
    lines = [f"training run {run_id}"]
    for s in summaries:
        ev = s.get("final_eval_loss")
        lines.append(
            f"  [{s['stage']}] steps={s['steps']} examples={s['n_train_examples']} "
            f"train_loss {_f(s.get('first_train_loss'))} -> {_f(s.get('final_train_loss'))}  "
            f"val_loss {_f(s.get('first_eval_loss'))} -> {_f(ev)}  "
            f"{s['tokens_per_s']:.0f} real tok/s  peak {s['peak_memory_gb']:.2f} GiB ({s['peak_memory_kind']})  "
            f"wall {s['wall_s']:.1f}s"
        )
        if s.get("reward_curve"):
            lines.append(f"      reward {_f(s.get('first_reward'))} -> {_f(s.get('final_reward'))} "
                         f"(training.reward_curve: reward, rewards/<fn>/mean, kl, completion lengths per step)")
        lines.append(f"      output: {s.get('merged_path') or s['output_path']}")
    return "\n".join(lines)


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def dumps(obj) -> str:
    return json.dumps(obj, default=str)
