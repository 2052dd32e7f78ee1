"""Training on CUDA, where the CPU tests cannot look: bf16, the sdpa kernels, and a real LoRA run.

    pytest -m gpu tests/gpu/test_gpu_training.py            # CUDA (EHRFORGE_GPU_TESTS_ON_CPU=1: the same on CPU)

Every test goes through the project's own code: training.data's collators, the trainer's compute_loss (chunked and
plain) and training.trainer.run_stage for the LoRA run.
"""

from __future__ import annotations

import json
import random

import pytest

pytestmark = pytest.mark.gpu


def _examples(n_docs: int = 6, vocab: int = 1024, seed: int = 0) -> list[dict]:
    """Token ids of varied lengths with answer-only labels (the last two thirds), as tokenize_chat makes them."""
    rng = random.Random(seed)
    out = []
    for n in [37, 90, 64, 121, 15, 200, 77, 150][:n_docs]:
        ids = [rng.randrange(4, vocab) for _ in range(n)]
        out.append({"input_ids": ids, "labels": [-100] * (n // 3) + ids[n // 3:]})
    return out


def _per_token_loss(logits, labels):
    import torch.nn.functional as F

    return F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), labels[:, 1:], reduction="none",
                           ignore_index=-100)


def _per_doc_mean(tok_loss, labels, exs) -> list[float]:
    """Split a packed row's per-token losses back into documents: mean loss over each document's labels."""
    lab = labels[0, 1:]
    out, start = [], 0
    for e in exs:
        seg = slice(start, start + len(e["input_ids"]) - 1)
        out.append(float(tok_loss[seg].sum() / (lab[seg] != -100).sum()))
        start += len(e["input_ids"])
    return out


def test_packed_loss_equals_per_example_loss_bf16_sdpa(device, random_llama):
    import torch

    from training.data import PackedCollator, PaddedCollator

    model = random_llama(torch.bfloat16, attn="sdpa")
    exs = _examples()
    to = lambda b: {k: v.to(device) for k, v in b.items() if k != "n_real_tokens"}
    with torch.no_grad():
        alone = []
        for e in exs:
            b = to(PaddedCollator(0)([e]))
            tl = _per_token_loss(model(input_ids=b["input_ids"], use_cache=False).logits, b["labels"])
            alone.append(float(tl.sum() / (b["labels"][:, 1:] != -100).sum()))
        p = to(PackedCollator(0)(exs))
        packed = _per_doc_mean(_per_token_loss(model(input_ids=p["input_ids"], position_ids=p["position_ids"],
                                                     use_cache=False).logits, p["labels"])[0], p["labels"], exs)
        # the same row without the position resets: documents see the ones before them (what packing must avoid)
        flat = torch.arange(p["input_ids"].shape[1], device=device)[None]
        leaky = _per_doc_mean(_per_token_loss(model(input_ids=p["input_ids"], position_ids=flat,
                                                    use_cache=False).logits, p["labels"])[0], p["labels"], exs)
        pb = to(PaddedCollator(0)(exs))
        tl = _per_token_loss(model(input_ids=pb["input_ids"], attention_mask=pb["attention_mask"],
                                   use_cache=False).logits, pb["labels"])
        padded = (tl.sum(1) / (pb["labels"][:, 1:] != -100).sum(1)).tolist()
    tol = 0.02  # mean loss ~7 nats; bf16 rounding moves it by ~0.002 (CPU), a leak by 0.1-0.4
    diff = max(abs(a - b) for a, b in zip(packed, alone))
    leak = max(abs(a - b) for a, b in zip(leaky, alone))
    assert leak > 5 * tol, f"the check cannot see a leak between documents (leak effect {leak:.4f})"
    assert diff < tol, f"packed per-document loss differs from the example alone by {diff:.4f}: {packed} vs {alone}"
    assert max(abs(a - b) for a, b in zip(padded, alone)) < tol, f"padded batch {padded} vs alone {alone}"


def _trainer(model, device, tmp_path, chunked: bool, chunk_tokens: int):
    import torch
    from transformers import TrainingArguments

    from training.trainer import _make_trainer_class

    args = TrainingArguments(output_dir=str(tmp_path / "t"), report_to=[], use_cpu=device == "cpu",
                             bf16=device == "cuda", per_device_train_batch_size=1)
    return _make_trainer_class()(model=model, args=args, chunked_loss=chunked, loss_chunk_tokens=chunk_tokens)


def test_chunked_loss_equals_model_loss_and_gradients(device, random_llama, tmp_path):
    import torch

    from training.data import PackedCollator

    model = random_llama(torch.bfloat16, vocab_size=4096).train()
    batch = PackedCollator(0)(_examples(8, vocab=4096, seed=1))
    batch = {k: v.to(device) for k, v in batch.items()}
    n_labels = int((batch["labels"][:, 1:] != -100).sum())
    results = {}
    for chunked in (False, True):
        trainer = _trainer(model, device, tmp_path, chunked, chunk_tokens=64)
        model.zero_grad(set_to_none=True)
        with trainer.compute_loss_context_manager():
            loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        grads = {n: p.grad.float().clone() for n, p in model.named_parameters()
                 if n in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight",
                          "model.embed_tokens.weight")}
        results[chunked] = (float(loss), grads)
    assert n_labels > 4 * 64, "the batch must span several loss chunks"
    (ref, g_ref), (got, g_got) = results[False], results[True]
    assert abs(got - ref) <= 2e-3 * abs(ref), f"chunked loss {got} vs the model's own loss {ref}"
    for name, g in g_ref.items():
        rel = float((g_got[name] - g).norm() / g.norm())
        assert rel < 2e-2, f"gradient of {name} differs by {rel:.4f} (relative norm) between chunked and plain loss"


def test_lora_run_lowers_loss_and_reloads_to_same_logits(device, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, TrainerCallback

    from ehrforge.tiny_model import build_tiny_model
    from training.config import TrainConfig
    from training.data import to_messages
    from training.synthetic import synthetic_frames
    from training.trainer import run_stage

    rows = synthetic_frames(n_patients=60, seed=0)["synthesis.instructions"].to_dict("records")
    train = [r for r in rows if r["split"] == "train"]
    base = build_tiny_model(tmp_path / "base", [f"{r['context']} {r['instruction']} {r['answer']}" for r in rows],
                            vocab_size=1024, hidden_size=128, num_layers=2)
    run_dir = tmp_path / "run"
    (run_dir / "prepared").mkdir(parents=True)
    with (run_dir / "prepared" / "sft_train.jsonl").open("w") as f:
        for r in train:
            f.write(json.dumps({"messages": to_messages(r)}) + "\n")
    cfg = TrainConfig.model_validate({
        "method": "lora", "model": {"base": str(base)},
        "data": {"max_seq_len": 512},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "speed": {"pack_tokens": 512, "packs_per_batch": 2},
        "train": {"max_steps": 30, "learning_rate": 3e-3, "warmup_ratio": 0.0, "logging_steps": 1,
                  "eval_steps": None, "save_steps": 1000, "resume": "never", "lr_scheduler": "constant"},
    })
    probe = torch.tensor([[int(t) for t in range(5, 69)]])
    seen = {}

    class Probe(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kw):
            model.eval()
            with torch.no_grad():
                seen["logits"] = model(input_ids=probe.to(model.device)).logits.float().cpu()
                with model.disable_adapter():
                    seen["base_logits"] = model(input_ids=probe.to(model.device)).logits.float().cpu()
            seen["dtype"] = next(model.parameters()).dtype

    summary = run_stage(cfg, "sft", str(base), run_dir, callbacks=[Probe()])
    curve = [r["loss"] for r in summary["loss_curve"] if r["split"] == "train"]
    assert summary["dtype"] == ("bfloat16" if device == "cuda" else "float32")
    assert summary["chunked_loss"] and summary["packing"]
    # a random-init base with a frozen LM head caps how far the loss can fall (~6.3 -> ~4.5 nats in 30 steps)
    assert sum(curve[-5:]) / 5 < curve[0] - 1.0, f"the loss did not fall by a nat: {curve}"

    reloaded = AutoModelForCausalLM.from_pretrained(str(base), dtype=seen["dtype"]).to(device)
    reloaded = PeftModel.from_pretrained(reloaded, summary["output_path"]).to(device).eval()
    with torch.no_grad():
        again = reloaded(input_ids=probe.to(device)).logits.float().cpu()
    effect = float((seen["logits"] - seen["base_logits"]).abs().max())
    drift = float((again - seen["logits"]).abs().max())
    assert effect > 0.1, f"the adapter hardly changes the logits ({effect:.4f}): the reload check would be blind"
    assert drift < 0.05 * effect, f"reloaded adapter gives other logits: max diff {drift:.4f} (adapter effect {effect:.4f})"
