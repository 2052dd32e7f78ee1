"""The one-call GPU kit (bench/gpu.sh, bench/gpu_report.py) without a GPU: the plan fits the window, the report
turns part outputs into the tables against every target, and the default test run holds no GPU test.

The kit's full CPU dry run (`GPU_KIT_DRY_RUN=1 bash bench/gpu.sh all`, docs/gpu.md) needs `make gpu-kit` first
and minutes, so it is a documented manual step, not a test here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ehrforge.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
import gpu_report  # noqa: E402

PRIORITY = ["setup", "train-1b", "train-8b", "llm", "tests", "eval", "report"]


def test_plan_is_in_priority_order_and_fits_eight_minutes(monkeypatch):
    monkeypatch.delenv("GPU_KIT_PLAN", raising=False)
    out = subprocess.run(["bash", "bench/gpu.sh", "plan"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    rows = [line.split() for line in out.stdout.splitlines()]
    parts = {r[0]: int(r[1].rstrip("s")) for r in rows if r[0] != "total"}
    assert list(parts) == PRIORITY
    assert sum(parts.values()) <= 480, parts
    assert all(box > 0 for box in parts.values())
    assert gpu_report.PARTS == PRIORITY


def _work(tmp_path: Path) -> Path:
    """Hand-written outputs of the parts, in the formats the benches write."""
    work = tmp_path / "work"
    (work / "8b").mkdir(parents=True)
    (work / "status.tsv").write_text("setup\tok\t0\t12\t30\ntrain-1b\tok\t0\t80\t90\ntrain-8b\tcut\t124\t120\t120\n"
                                     "llm\tok\t0\t90\t105\ntests\tfailed\t1\t50\t70\neval\tok\t0\t40\t60\n")
    (work / "setup.json").write_text(json.dumps({"device": "NVIDIA H200", "python": "3.12.3", "torch": "2.11.0",
                                                 "transformers": "5.17.0", "peft": "0.18.0", "dry_run": False}))
    common = {"size": "1b", "n_params": 1_235_814_400, "peak_memory_gib": 20.0, "batch": "b"}
    (work / "speed_1b.json").write_text(json.dumps([
        {**common, "variant": "ours:2048x8", "real_tokens_per_s": 50_000.0, "mfu": 0.375, "mfu_h200_measured": 0.469},
        {**common, "variant": "hf_padded", "real_tokens_per_s": 20_000.0, "mfu": 0.15, "mfu_h200_measured": 0.188},
        {"variant": "ours_compile:2048x8", "size": "1b", "error": "RuntimeError('boom')"},
    ]))
    (work / "8b" / "speed_8b.json").write_text(json.dumps([
        {**common, "size": "8b", "variant": "ours:2048x4", "real_tokens_per_s": 8_000.0, "mfu": 0.40,
         "mfu_h200_measured": 0.50},
    ]))
    (work / "llm.json").write_text(json.dumps({"n_prompts": 64, "prompt_tokens": 512, "new_tokens": 128, "rows": [
        {"name": "naive", "mode": "naive", "batch_size": 1, "tokens_per_s": 100.0},
        {"name": "dynamic b64", "mode": "dynamic", "batch_size": 64, "tokens_per_s": 4_000.0, "vs_naive": 40.0},
        {"name": "static b64", "mode": "static", "batch_size": 64, "tokens_per_s": 12_000.0, "vs_naive": 120.0},
    ]}))
    (work / "tests.xml").write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.gpu.test_gpu_training" name="test_packed_loss_equals_per_example_loss_bf16_sdpa" '
        'time="1.5"/><testcase classname="tests.gpu.test_gpu_training" '
        'name="test_lora_run_lowers_loss_and_reloads_to_same_logits" time="9.0"><failure message="loss did not fall"/>'
        '</testcase></testsuite></testsuites>')
    (work / "eval.json").write_text(json.dumps({
        "n_items": 64, "mix": {"text": 40, "yes_no": 24}, "max_new_tokens": 32, "batch_size": 16,
        "ours": {"items_per_s": 20.0, "seconds": 3.2}, "naive": {"items_per_s": 2.0, "seconds": 32.0},
        "speedup": 10.0}))
    return work


def test_report_collects_parts_and_judges_every_target(tmp_path):
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "kit.json").write_text(json.dumps({"commit": "0123456789abcdef", "dirty": False}))
    results = gpu_report.collect(_work(tmp_path), kit, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == results
    text = (tmp_path / "out" / "summary.txt").read_text()
    targets = {line.split("|")[1].strip(): line.split("|")[3].strip()
               for line in text.split("## Targets")[1].split("##")[0].splitlines() if line.startswith("| ≥")
               or line.startswith("| evaluation") or line.startswith("| every")}
    assert targets[gpu_report.TARGETS["train-1b"]] == "**met**"           # 50k >= 45k
    assert targets[gpu_report.TARGETS["train-8b"]] == "**not met**"       # 40 % < 45 % of 989
    assert targets[gpu_report.TARGETS["llm"]] == "**met**"                # static 12k >= 10k
    assert targets[gpu_report.TARGETS["eval"]] == "measured"
    assert targets[gpu_report.TARGETS["tests"]] == "**not met**"          # 1 of 2 failed
    assert "| ours:2048x8 | 50,000 | 37.5 % | 46.9 % | 20.0 | 2.50x |" in text
    assert "| ours_compile:2048x8 | failed: RuntimeError('boom')" in text
    assert "part cut for time after 120 s (box 120 s)" in text
    assert "| compile | 64 | not yet measured |" in text
    assert "commit `0123456789ab`" in text and "NVIDIA H200" in text
    # render reads the returned folder the same way
    assert gpu_report.render(json.loads((tmp_path / "out" / "results.json").read_text())) == text


def test_render_empty_and_bad_folder(tmp_path, capsys):
    empty = gpu_report.render(None)
    assert "No GPU figure has been measured yet" in empty
    assert empty.count("not yet measured") > 20
    with pytest.raises(SystemExit, match="no .*results.json"):
        gpu_report.main(["render", str(tmp_path)])


def test_default_test_run_selects_no_gpu_test():
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/gpu"], cwd=REPO_ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 5, out.stdout[-2000:]  # 5 = nothing selected
    assert "deselected" in out.stdout


def test_report_reads_live_test_outcomes_when_the_tests_part_was_cut(tmp_path):
    work = _work(tmp_path)
    (work / "tests.xml").unlink()  # pytest killed before it wrote the XML
    (work / "tests.jsonl").write_text(json.dumps({
        "name": "test_packed_loss_equals_per_example_loss_bf16_sdpa", "module": "tests/gpu/test_gpu_training.py",
        "outcome": "passed", "when": "call", "seconds": 1.0, "message": ""}) + "\n")
    results = gpu_report.collect(work, tmp_path, tmp_path / "out")
    assert [t["outcome"] for t in results["tests"]] == ["passed"]
    text = (tmp_path / "out" / "summary.txt").read_text()
    assert "| test_packed_loss_equals_per_example_loss_bf16_sdpa | passed | 1.0 |" in text
    assert "| test_lora_run_lowers_loss_and_reloads_to_same_logits | not yet measured | |" in text


def test_merge_takes_each_part_from_the_last_call_that_ran_it():
    """A rerun in the same window (the parts that failed or were cut) replaces those parts only; generation rows
    merge by name, the longer one-prompt-at-a-time baseline stays and every ratio is taken against it."""
    first = {"schema": 1, "collected_at": "t1", "kit": {"commit": "aaaa"}, "setup": {}, "dry_run": False,
             "status": {p: {"status": "ok", "rc": 0, "seconds": 1, "box_s": 9} for p in ("setup", "train-1b", "llm")},
             "train-1b": [{"variant": "ours:2048x8", "error": "RuntimeError('dtype')"}],
             "llm": {"n_prompts": 64, "prompt_tokens": 512, "new_tokens": 128, "rows": [
                 {"name": "naive", "mode": "naive", "batch_size": 1, "n_prompts": 4, "tokens_per_s": 50.0},
                 {"name": "static b64", "mode": "static", "batch_size": 64, "tokens_per_s": 9000.0, "vs_naive": 180.0}]}}
    second = {"schema": 1, "collected_at": "t2", "kit": {"commit": "bbbb"}, "setup": {}, "dry_run": False,
              "status": {p: {"status": "ok", "rc": 0, "seconds": 2, "box_s": 9} for p in ("train-1b", "llm")},
              "train-1b": [{"variant": "hf_padded", "real_tokens_per_s": 1.0, "mfu": 0.1, "peak_memory_gib": 1.0,
                            "batch": "8 examples, padded"}],
              "llm": {"n_prompts": 64, "prompt_tokens": 512, "new_tokens": 128, "rows": [
                  {"name": "naive", "mode": "naive", "batch_size": 1, "n_prompts": 1, "tokens_per_s": 20.0},
                  {"name": "compile b64", "mode": "compile", "batch_size": 64, "tokens_per_s": 8000.0}]}}
    merged = gpu_report.merge([first, second])
    assert merged["train-1b"] == second["train-1b"]                       # the rerun's part, whole
    rows = {r["name"]: r for r in merged["llm"]["rows"]}
    assert set(rows) == {"naive", "static b64", "compile b64"}
    assert rows["naive"]["n_prompts"] == 4                                # the 4-prompt baseline stays
    assert rows["compile b64"]["vs_naive"] == pytest.approx(160.0)        # 8000 / 50, not / 20
    assert merged["kit"]["commit"] == "bbbb" and [c["kit"]["commit"] for c in merged["calls"]] == ["aaaa", "bbbb"]
    assert "From 2 calls in one GPU window" in gpu_report.render(merged)
