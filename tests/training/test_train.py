"""End-to-end CPU training on the tiny model: learning, records, resume, adapter reload, merge, cpt -> sft."""

import json
from pathlib import Path

import pytest
import torch

from ehrforge import warehouse
from training.config import load_train_config, run_id_for
from training.launch import run_dir_for, train

CONFIG = "training/configs/demo/tiny_lora.yaml"


FAST: list[str] = []


@pytest.fixture(autouse=True)
def _fast(fast):
    FAST[:] = fast


def _cfg(*overrides):
    return load_train_config(CONFIG, FAST + list(overrides))


def _logits(model, tok):
    from training.data import ensure_chat_template, to_messages

    ensure_chat_template(tok, None)
    msgs = to_messages({"context": "Sex: F\nAge: 70", "instruction": "What is the sex?", "answer": "F"})
    ids = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model.eval()(input_ids=ids, use_cache=False).logits


def test_loss_falls_and_run_is_recorded(train_env):
    cfg = _cfg("train.max_steps=20", "train.eval_steps=10", "train.save_steps=10")
    (s,) = train(cfg)
    assert s["steps"] == 20
    assert s["final_train_loss"] < s["first_train_loss"] - 1.0, s["loss_curve"]
    assert s["final_eval_loss"] < s["first_eval_loss"] or s["best_eval_loss"] < 5.0
    assert s["n_train_examples"] > 100 and s["n_dropped"] == 0 and s["tokens_per_s"] > 0
    with warehouse.session(read_only=True) as con:
        runs = con.execute("select * from training.runs").df()
        curve = con.execute("select * from training.loss_curve order by step").df()
        status = con.execute("select status from meta.runs where run_id=?", [run_id_for(cfg)]).fetchone()[0]
    assert len(runs) == 1 and status == "succeeded"
    r = runs.iloc[0]
    assert r["run_id"] == run_id_for(cfg) and r["stage"] == "sft" and r["method"] == "lora"
    assert r["base_model"] == "tiny://" and r["data_version"] and r["steps"] == 20
    assert r["output_path"] and Path(r["output_path"]).is_dir() and r["config_hash"]
    assert set(curve["split"]) == {"train", "val"} and len(curve[curve.split == "train"]) >= 20
    # re-running the same config resumes at the end, trains nothing more and does not duplicate rows
    train(cfg)
    with warehouse.session(read_only=True) as con:
        assert con.execute("select count(*) from training.runs").fetchone()[0] == 1


class _Crash(Exception):
    pass


def _crash_after_save(at_step):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == at_step:
                raise _Crash()

    return Crash()


def test_resume_continues_the_run_from_the_newest_complete_checkpoint(train_env, caplog):
    """Killed while checkpoint-6 was still empty: the re-run skips it (with a log line), resumes from the complete
    checkpoint-4, and the loss curve and summary figures cover the whole run, equal to an uninterrupted run's."""
    common = ["train.max_steps=8", "train.save_steps=4", "output.record=false", "lora.dropout=0.1"]
    (full,) = train(_cfg(*common, f"output.dir={train_env}/a"))
    cfg_b = _cfg(*common, f"output.dir={train_env}/b")
    with pytest.raises(_Crash):
        train(cfg_b, callbacks=[_crash_after_save(4)])
    sft = run_dir_for(cfg_b) / "sft"
    assert (sft / "checkpoint-4" / "trainer_state.json").is_file()
    (sft / "checkpoint-6").mkdir()  # what a kill during the next save leaves
    with caplog.at_level("WARNING"):
        (resumed,) = train(cfg_b)
    assert "skipping incomplete checkpoint" in caplog.text and "checkpoint-6" in caplog.text
    assert resumed["resumed_from"].endswith("checkpoint-4") and resumed["steps"] == 8
    curve = lambda s: {r["step"]: r["loss"] for r in s["loss_curve"] if r["split"] == "train"}
    a, b = curve(full), curve(resumed)
    assert sorted(b) == sorted(a) == list(range(1, 9))  # the whole run, not just the steps after the resume
    for step in b:  # same data order and RNG state: the same losses as the uninterrupted run
        assert b[step] == pytest.approx(a[step], rel=1e-4, abs=1e-4)
    for key in ("first_train_loss", "final_train_loss", "mean_train_loss", "final_eval_loss"):
        assert resumed[key] == pytest.approx(full[key], rel=1e-4, abs=1e-4), key
    assert resumed["real_tokens_trained"] == full["real_tokens_trained"]


@pytest.mark.slow  # 4-8 s (a dbt invocation / extra training run): keeps the default run under 4 min
def test_finished_run_is_reported_and_left_alone(train_env, caplog):
    """Re-running a finished run changes nothing (no step 5 of 4, final/ and its records untouched); --retrain trains
    it again. A periodic eval at the last step is the run's one final val row."""
    cfg = _cfg("train.max_steps=4", "train.save_steps=4", "train.eval_steps=2")
    (first,) = train(cfg)
    vals = [r["step"] for r in first["loss_curve"] if r["split"] == "val"]
    assert vals == [2, 4]  # one val row per eval step, the final one included once
    run_dir = run_dir_for(cfg)
    final = Path(first["output_path"])
    stamp = lambda: {p.name: p.stat().st_mtime_ns for p in [final, *final.iterdir(), run_dir / "sft" / "summary.json"]}
    before = stamp()
    with warehouse.session(read_only=True) as con:
        rows_before = con.execute("select * exclude (created_at) from training.runs").fetchall()
        n_curve = con.execute("select count(*) from training.loss_curve where split = 'val'").fetchone()[0]
    assert n_curve == 2
    with caplog.at_level("INFO"):
        (again,) = train(cfg)
    assert "already finished" in caplog.text and "--retrain" in caplog.text
    assert again == first and stamp() == before
    assert not (run_dir / "sft" / "checkpoint-5").exists()
    with warehouse.session(read_only=True) as con:
        assert con.execute("select * exclude (created_at) from training.runs").fetchall() == rows_before
    (retrained,) = train(cfg, retrain=True)
    assert retrained["steps"] == 4 and retrained["resumed_from"] is None
    assert stamp() != before


@pytest.mark.slow  # 4-8 s (a dbt invocation / extra training run): keeps the default run under 4 min
def test_tokens_per_second_excludes_a_long_final_evaluation(train_env):
    """The final evaluation runs after the timed training; its time is not subtracted from a wall time that does
    not contain it (which gave 1e11 tok/s)."""
    from transformers import TrainerCallback

    class SlowEval(TrainerCallback):
        def on_evaluate(self, args, state, control, **kw):
            import time

            time.sleep(3.0)

    (s,) = train(_cfg("train.max_steps=2", "output.record=false"), callbacks=[SlowEval()])
    seconds = s["real_tokens_trained"] / s["tokens_per_s"]  # the training time the figure was computed over
    assert 0.05 < seconds < s["wall_s"] - 2.5, (seconds, s["wall_s"])


def test_adapter_reloads_and_merges_to_same_outputs(train_env):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    captured = {}

    class Keep(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, processing_class=None, **kw):
            captured["logits"] = _logits(model, processing_class)

    cfg = _cfg("train.max_steps=6", "output.merge=true", "output.record=false")
    (s,) = train(cfg, callbacks=[Keep()])
    tok = AutoTokenizer.from_pretrained(s["output_path"])
    base = AutoModelForCausalLM.from_pretrained(s["base_model_path"])
    before = _logits(base, tok)
    reloaded = PeftModel.from_pretrained(base, s["output_path"])
    after = _logits(reloaded, tok)
    assert not torch.allclose(before, captured["logits"], atol=1e-3)  # training changed the model
    assert torch.allclose(after, captured["logits"], atol=1e-5)
    merged = AutoModelForCausalLM.from_pretrained(s["merged_path"])
    assert torch.allclose(_logits(merged, tok), captured["logits"], atol=1e-4)


@pytest.mark.slow  # 4-8 s (a dbt invocation / extra training run): keeps the default run under 4 min
def test_cpt_then_sft(train_env):
    cfg = load_train_config("training/configs/demo/tiny_cpt_lora.yaml", FAST + [
        "cpt.block_size=256", "cpt.max_steps=4", "train.max_steps=4"])
    cpt, sft = train(cfg)
    assert cpt["stage"] == "cpt" and cpt["steps"] == 4 and cpt["merged_path"]
    assert sft["base_model_path"] == cpt["merged_path"]
    prepared = run_dir_for(cfg) / "prepared"
    with warehouse.session(read_only=True) as con:
        train_ids = {r[0] for r in con.execute("select subject_id from marts.dim_splits where split='train'").fetchall()}
        stages = [r[0] for r in con.execute("select stage from training.runs order by stage").fetchall()]
    for name in ("notes_train.jsonl", "notes_val.jsonl"):
        for line in (prepared / name).read_text().splitlines():
            assert json.loads(line)["subject_id"] in train_ids
    assert stages == ["cpt", "sft"]


def test_full_finetune_runs(train_env):
    (s,) = train(_cfg("method=full", "train.max_steps=3", "train.learning_rate=1e-3", "output.record=false"))
    assert s["n_trainable_params"] == s["n_params"] and s["steps"] == 3
    assert (Path(s["output_path"]) / "config.json").exists()


@pytest.mark.slow  # 4-8 s (a dbt invocation / extra training run): keeps the default run under 4 min
def test_qlora_trains_a_4bit_base_and_reloads(train_env):
    """QLoRA through bitsandbytes' CPU backend: the same code path a GPU run takes, 4-bit NF4 base included."""
    pytest.importorskip("bitsandbytes")
    from bitsandbytes.nn import Linear4bit
    from peft import PeftModel, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    captured = {}

    class Keep(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            # no layer is ever repacked into bitsandbytes' CPU inference layout (no autograd) by the evals
            repacked = sum(getattr(m.weight.quant_state, "packing_format_for_cpu", False)
                           for m in model.modules() if isinstance(m, Linear4bit))
            captured["repacked"] = max(captured.get("repacked", 0), repacked)

        def on_train_end(self, args, state, control, model=None, processing_class=None, **kw):
            captured["n4bit"] = sum(isinstance(m, Linear4bit) for m in model.modules())
            captured["logits"] = _logits(model, processing_class)

    cfg = _cfg("method=qlora", "train.max_steps=12", "train.eval_steps=6", "output.merge=true")
    (s,) = train(cfg, callbacks=[Keep()])
    assert captured["n4bit"] == 2 * 7  # every attention and MLP projection of both layers is 4-bit
    assert captured["repacked"] == 0
    assert s["final_train_loss"] < s["first_train_loss"] - 0.5, s["loss_curve"]
    assert s["n_trainable_params"] < s["n_params"] / 2
    with warehouse.session(read_only=True) as con:
        assert con.execute("select method from training.runs").fetchone()[0] == "qlora"
    # the adapter reloads onto a freshly quantized base and gives the trained model's outputs
    from training.recipes.qlora import quantization_config

    tok = AutoTokenizer.from_pretrained(s["output_path"])
    base = AutoModelForCausalLM.from_pretrained(
        s["base_model_path"], dtype=torch.bfloat16, quantization_config=quantization_config(cfg, torch.bfloat16))
    base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)  # norms in fp32, as trained
    before = _logits(base, tok)
    reloaded = _logits(PeftModel.from_pretrained(base, s["output_path"]), tok)
    assert not torch.allclose(before, captured["logits"], atol=1e-2)  # training changed the outputs
    assert torch.allclose(reloaded, captured["logits"], atol=1e-3)  # bf16 4-bit matmuls: not bit-exact
    assert (Path(s["merged_path"]) / "config.json").exists()  # merged onto the full-precision base
