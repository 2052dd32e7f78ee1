"""The multi-process path of `make train NUM_GPUS=2`, exercised on CPU processes over gloo.

accelerate runs CPU processes as plain data parallel (MULTI_CPU): FSDP and ZeRO-3 need CUDA, so those
configs are validated in test_config.py and exercised only on GPUs.
"""

import json
import subprocess
import sys

import pytest

from ehrforge import warehouse

pytestmark = pytest.mark.slow


def test_two_cpu_processes_train_and_record(train_env, fast):
    import os

    cmd = [sys.executable, "-m", "training.launch", "--num-gpus", "2",
           "--config", "training/configs/demo/tiny_lora.yaml", *fast, "train.max_steps=6", "train.save_steps=3",
           "train.eval_steps=3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with warehouse.session(read_only=True) as con:
        row = con.execute("select num_processes, distributed_type, steps, output_path, final_eval_loss "
                          "from training.runs").fetchone()
    assert row[0] == 2 and "MULTI_CPU" in row[1] and row[2] == 6 and row[4] is not None
    summary = json.loads(open(row[3].replace("/final", "/summary.json")).read())
    assert summary["real_tokens_trained"] > 0
    # both ranks saved their RNG state: the run can resume on 2 processes
    ckpt = row[3].replace("/final", "/checkpoint-6")
    assert os.path.exists(f"{ckpt}/rng_state_0.pth") and os.path.exists(f"{ckpt}/rng_state_1.pth")
