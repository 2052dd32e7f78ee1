"""bench/bench_train.py runs end to end on CPU with the tiny shape (the GPU figures come from the same code)."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_bench_lengths_and_speed(train_env):
    import os

    lengths = train_env / "lengths.json"
    env = dict(os.environ)
    run = lambda *a: subprocess.run([sys.executable, "bench/bench_train.py", *a], capture_output=True, text=True,
                                    timeout=600, env=env)
    p = run("lengths", "--out", str(lengths))
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(lengths.read_text())["n"] > 100
    p = run("speed", "--size", "tiny", "--lengths", str(lengths), "--steps", "3", "--warmup", "1",
            "--variants", "hf_padded,ours:512x2,ours_nochunk:512x2", "--out-dir", str(train_env / "bench"))
    assert p.returncode == 0, p.stderr[-2000:]
    results = json.loads((train_env / "bench" / "speed_tiny.json").read_text())
    assert [r["variant"] for r in results] == ["hf_padded", "ours:512x2", "ours_nochunk:512x2"]
    assert all(r["real_tokens_per_s"] > 0 and "error" not in r for r in results)
