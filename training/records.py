"""Warehouse records of training runs.

`training.runs`: one row per training run and stage (a cpt+sft run has a `cpt` row and an `sft` row).
`training.loss_curve`: one row per logged train loss / periodic val loss, per run, stage and step.
`training.reward_curve`: one row per logged GRPO figure (reward, per-function reward, KL, completion length, ...),
per run, stage and step.
All carry the run columns (run_id, created_at, code_version, config_hash) and are idempotent per run; their
columns are declared once, in dbt_project/models/sources/_training__sources.yml (ehrforge.tables).
"""

from __future__ import annotations

import json
import logging

import pandas as pd

from ehrforge import tables

log = logging.getLogger(__name__)

RUNS_TABLE = "training.runs"
CURVE_TABLE = "training.loss_curve"
REWARD_CURVE_TABLE = "training.reward_curve"

def runs_frame(cfg, meta: dict, summaries: list[dict]) -> pd.DataFrame:
    """One row per stage, with the columns declared in dbt_project/models/sources/_training__sources.yml."""
    from ehrforge.config import config_json

    rows = []
    for s in summaries:
        row = {k: s.get(k) for k in tables.columns(RUNS_TABLE, with_run_columns=False)}
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
    return tables.frame(RUNS_TABLE, rows)


def curve_frame(summaries: list[dict]) -> pd.DataFrame:
    return tables.frame(CURVE_TABLE, [{"stage": s["stage"], **r} for s in summaries for r in s.get("loss_curve", [])])


def reward_curve_frame(summaries: list[dict]) -> pd.DataFrame:
    return tables.frame(REWARD_CURVE_TABLE,
                        [{"stage": s["stage"], **r} for s in summaries for r in s.get("reward_curve", [])])


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
        warehouse.write_table(con, REWARD_CURVE_TABLE, reward_curve_frame(summaries), run)
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
