"""Fault injection on `python -m training.launch` (see tests/faults.py): SIGKILL while a checkpoint is being written,
re-run, compare with an uninterrupted run; a finished run re-run changes nothing."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from ehrforge import warehouse
from tests.faults import FileAppears, command_env, kill_at, run_to_end
from training.config import load_train_config, run_id_for
from training.launch import train

CONFIG = "training/configs/demo/tiny_lora.yaml"


def _args(fast, out) -> list[str]:
    return [*fast, "train.max_steps=8", "train.save_steps=2", "train.eval_steps=4", "train.save_total_limit=null",
            f"output.dir={out}"]


def _stamp(run_dir):
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_training_killed_while_checkpoint_6_is_written_resumes_from_checkpoint_4(train_env, fast):
    out = train_env / "killed"
    cmd = [sys.executable, "-m", "training.launch", "--config", CONFIG, *_args(fast, out)]
    kill_at(cmd, FileAppears(out / "sft", "checkpoint-6"))
    ckpt6 = out / "sft" / "checkpoint-6"
    for later in (out / "sft").glob("checkpoint-8"):  # the kill may land a moment late; keep the case
        shutil.rmtree(later)
    if ckpt6.exists():  # SIGKILL lands within milliseconds of the folder appearing; empty it, as a kill at its
        shutil.rmtree(ckpt6)  # first byte would leave it
    ckpt6.mkdir()
    with warehouse.session(read_only=True) as con:
        rid = run_id_for(load_train_config(CONFIG, _args(fast, out)))
        assert warehouse.fetch_scalar(con, "select status from meta.runs where run_id = ?", [rid]) == "running"

    res = run_to_end(cmd)
    assert res.returncode == 0, res.output[-3000:]
    assert "skipping incomplete checkpoint" in res.output and "checkpoint-6" in res.output
    assert "resuming sft from" in res.output and "checkpoint-4" in res.output
    resumed = json.loads((out / "sft" / "summary.json").read_text())

    (full,) = train(load_train_config(CONFIG, _args(fast, train_env / "uninterrupted")))
    curve = lambda s: [(r["step"], r["split"], round(r["loss"], 4)) for r in s["loss_curve"]]
    assert curve(resumed) == curve(full)  # the whole run, one val row per eval step
    for key in ("steps", "first_train_loss", "final_train_loss", "mean_train_loss", "final_eval_loss",
                "real_tokens_trained"):
        assert resumed[key] == pytest.approx(full[key], rel=1e-4), key
    with warehouse.session(read_only=True) as con:
        row = con.execute("select steps, first_train_loss, final_train_loss, tokens_per_s from training.runs "
                          "where run_id = ?", [rid]).fetchone()
        assert row[0] == 8 and row[1] is not None and row[2] is not None and row[3] < 1e7
        assert warehouse.fetch_scalar(con, "select status from meta.runs where run_id = ?", [rid]) == "succeeded"

    # the finished run, re-run: reported, nothing touched (files, records)
    before = _stamp(out)
    with warehouse.session(read_only=True) as con:
        rows = con.execute("select * from training.runs where run_id = ?", [rid]).fetchall()
    (again,) = train(load_train_config(CONFIG, _args(fast, out)))
    assert again == resumed and _stamp(out) == before
    with warehouse.session(read_only=True) as con:
        assert con.execute("select * from training.runs where run_id = ?", [rid]).fetchall() == rows


@pytest.mark.slow
def test_training_killed_after_a_complete_checkpoint_and_finished_run_rerun_as_commands(train_env, fast):
    out = train_env / "killed"
    cmd = [sys.executable, "-m", "training.launch", "--config", CONFIG, *_args(fast, out)]
    kill_at(cmd, FileAppears(out / "sft", "checkpoint-4/trainer_state.json"))
    res = run_to_end(cmd)
    assert res.returncode == 0 and "resuming sft from" in res.output, res.output[-3000:]
    before = _stamp(out)
    again = run_to_end(cmd)
    assert again.returncode == 0 and "already finished" in again.output and "--retrain" in again.output
    assert _stamp(out) == before
    retrained = run_to_end(cmd + ["--retrain"])
    assert retrained.returncode == 0 and _stamp(out) != before
    assert json.loads((out / "sft" / "summary.json").read_text())["resumed_from"] is None
