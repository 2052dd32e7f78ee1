"""Evaluation throughput: items/s for generation + scoring, the batched pipeline vs a naive per-item loop, in one run.

    python bench/bench_eval.py                                   # = make bench-eval  (CPU, tiny model, demo items)
    python bench/bench_eval.py --n-items 96 --max-new-tokens 32
    python bench/bench_eval.py --items items.jsonl --model-1b --device cuda     # GPU machine, no warehouse needed

ours  : the evaluation pipeline: prompts grouped and length-sorted into batches (ehrforge.llm transformers backend,
        left padding), yes/no items by one batched teacher-forced choice-scoring pass, metrics over the whole set
        at once (one embedding batch, one ROUGE scorer). With a warehouse (CPU mode) this is the real code path:
        run_batch with the llm.calls cache on a fresh warehouse copy, so nothing is answered from the cache;
        the cached re-run is timed too.
naive : the seed scripts' shape: for each item, one model.generate (or one forward per choice for yes/no), then
        each metric called on that one item.
Both use the same weights, items, greedy decoding and max_new_tokens; model load time is excluded from both.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCH_METRICS = {"note_generation": ["rouge_l", "rouge5", "ngram8_overlap"],
                 "discharge_note": ["rouge_l", "rouge5", "ngram8_overlap"]}


def bench_spec(model_path: str, max_new_tokens: int, batch_size: int, skip: set[str]):
    from evaluation.metrics import default_metrics
    from evaluation.spec import EvalSpec

    metrics = {t: [m for m in ms if m not in skip] for t, ms in BENCH_METRICS.items()}
    for at in ("text", "yes_no", "set", "number"):
        metrics[at] = [m for m in default_metrics(at) if m not in skip]
    return EvalSpec(name="bench", version=1, data={"dataset": "bench"},
                    models=[{"name": "m", "kind": "base", "path": model_path}], metrics=metrics,
                    generation={"max_new_tokens": max_new_tokens, "batch_size": batch_size}, build_results=False)


def items_from_warehouse(src: Path, n: int, workdir: Path, dataset: str = "demo"):
    """Copy the warehouse, take n items (all tasks, seeded) of `dataset` in its synthesis.instructions."""
    import pandas as pd

    from ehrforge import warehouse
    from evaluation.data import load_items, select_subset
    from evaluation.models import tiny_model
    from evaluation.spec import DataSpec

    db = workdir / "bench.duckdb"
    shutil.copy(src, db)
    with warehouse.session(db) as con:
        warehouse.require_tables(con, ["synthesis.instructions"],
                                 hint=f"build the instruction set first: `make synthesize` (dataset {dataset!r})")
        parts = []
        for split in ("test", "val", "train"):
            df, _ = load_items(con, DataSpec(dataset=dataset, split=split))
            parts.append(df)
        items = pd.concat(parts).reset_index(drop=True)
        if items.empty:
            raise SystemExit(f"synthesis.instructions in {src} has no rows of dataset {dataset!r}: "
                             f"run `make synthesize` (or pass --dataset)")
        items = select_subset(items, n_per_task=max(1, n // items["task"].nunique() + 1), n=n, seed=0)
        model = tiny_model(con, workdir)
    return db, items.reset_index(drop=True), model


SHAPES = {  # hidden, intermediate, layers, heads, kv heads
    "1b": (2048, 8192, 16, 32, 8),  # Llama-3.2-1B
    "tiny": (64, 256, 2, 4, 4),  # to check the GPU command runs, on CPU
}


def random_model(tokenizer_dir: str, out: Path, shape: str = "1b") -> str:
    """A random-init Llama of the given shape (default Llama-3.2-1B's), the tokenizer kept."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    hidden, inter, layers, heads, kv = SHAPES[shape]
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=4096,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def ours(items, spec, cfg, con):
    """The pipeline's generation + scoring. With a connection: runner.generate (run_batch, cache on)."""
    from evaluation import runner

    t0 = time.perf_counter()
    if con is not None:
        responses, _ = runner.generate(items, spec, runner_model(cfg), con, None, False)
        preds = [r.text for r in responses]
        p_yes = [runner.p_yes_of(r, spec.generation.choices) for r in responses]
    else:
        preds, p_yes = backend_direct(items, spec, cfg)
    t_gen = time.perf_counter() - t0
    rows = runner.score_items(items, preds, p_yes, spec)
    return time.perf_counter() - t0, t_gen, rows


def runner_model(cfg):
    from evaluation.models import ResolvedModel

    return ResolvedModel(name="m", kind="base", model_path=cfg.model, adapter_path=None, base_model_path=cfg.model,
                         training_run_id=None, base_url=None, backend=cfg.backend, llm_config=cfg)


def backend_direct(items, spec, cfg):
    """What run_batch does for an in-process backend, minus the cache (for machines without duckdb)."""
    from ehrforge.llm.backends import Call, get_backend
    from ehrforge.llm.client import _params
    from ehrforge.llm.types import Request

    backend = get_backend(cfg)
    calls = []
    for r in items.itertuples():
        choices = spec.generation.choices if r.answer_type == "yes_no" else None
        req = Request(id=r.instruction_id, messages=r.messages, choices=choices)
        calls.append(Call(key=r.instruction_id, request_id=r.instruction_id, messages=r.messages,
                          params=_params(req, cfg)))
    calls.sort(key=lambda c: (repr(sorted(c.params.items())), len(json.dumps(c.messages))))
    out = {}
    for i in range(0, len(calls), cfg.batch_size):
        batch = calls[i:i + cfg.batch_size]
        for c, res in zip(batch, backend.generate(batch)):
            out[c.key] = res
    preds, p_yes = [], []
    for iid in items["instruction_id"]:
        res = out[iid]
        preds.append(res.text)
        if res.choice_logprobs:
            import math

            lp = res.choice_logprobs
            m = max(lp.values())
            z = sum(math.exp(v - m) for v in lp.values())
            p_yes.append(math.exp(lp[spec.generation.choices[0]] - m) / z)
        else:
            p_yes.append(None)
    return preds, p_yes


def naive(items, spec, model_path, device, dtype):
    """One item at a time: generate (or score each choice), then every metric on that single item."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evaluation.metrics import MetricInput, get_metric

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device).eval()
    choices = spec.generation.choices
    t0 = time.perf_counter()
    n_scores = 0
    for r in items.itertuples():
        prompt = tok.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False)
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False).to(device)
        p = None
        with torch.inference_mode():
            if r.answer_type == "yes_no":
                lps = []
                for c in choices:
                    cid = tok(c, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
                    full = torch.cat([ids["input_ids"], cid], dim=1)
                    logp = torch.log_softmax(model(full).logits.float(), dim=-1)
                    n = cid.shape[1]
                    lps.append(sum(float(logp[0, full.shape[1] - n - 1 + j, cid[0, j]]) for j in range(n)))
                p = float(torch.softmax(torch.tensor(lps), 0)[0])
                pred = choices[int(torch.tensor(lps).argmax())]
            else:
                out = model.generate(**ids, max_new_tokens=spec.generation.max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id)
                pred = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        item = MetricInput(prediction=pred, reference=str(r.answer), answer_type=r.answer_type, p_yes=p,
                           context=r.context or "")
        for name in spec.metrics_for(r.task, r.answer_type):
            get_metric(name).score([item], **spec.metric_params.get(name, {}))
            n_scores += 1
    return time.perf_counter() - t0, n_scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-items", type=int, default=48)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--warehouse", default=os.environ.get("EHRFORGE_DUCKDB", "warehouse/ehrforge.duckdb"))
    ap.add_argument("--dataset", default="demo", help="dataset of synthesis.instructions to take items from")
    ap.add_argument("--items", help="JSONL of items (from --export-items) instead of a warehouse")
    ap.add_argument("--export-items", help="write the items used to this JSONL (for the GPU run)")
    ap.add_argument("--export-only", help="write DIR/items.jsonl and DIR/tokenizer (the GPU run's inputs) and stop")
    ap.add_argument("--model", help="model dir (default: the tiny model built from the warehouse)")
    ap.add_argument("--model-1b", action="store_true", help="random-init 1B Llama with the --model tokenizer")
    ap.add_argument("--random-shape", choices=sorted(SHAPES), help="random-init Llama of this shape (1b = --model-1b)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out-json", help="write the figures to this JSON file (rewritten after each path)")
    ap.add_argument("--skip-metrics", default="", help="comma-separated metrics to leave out (e.g. embedding_similarity)")
    args = ap.parse_args()

    import pandas as pd
    import torch

    from ehrforge.llm import LLMConfig
    from ehrforge.llm.backends.transformers_backend import resolve_device_dtype

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    work = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    os.environ["EHRFORGE_RUNS"] = str(work)
    db = None
    if args.items:
        items = pd.read_json(args.items, lines=True)
        model = args.model
    else:
        db, items, model = items_from_warehouse(Path(args.warehouse), args.n_items, work, args.dataset)
        model = args.model or model
    if args.export_items:
        items.to_json(args.export_items, orient="records", lines=True)
    if args.export_only:
        from transformers import AutoTokenizer

        kit = Path(args.export_only)
        kit.mkdir(parents=True, exist_ok=True)
        items.to_json(kit / "items.jsonl", orient="records", lines=True)
        AutoTokenizer.from_pretrained(model).save_pretrained(kit / "tokenizer")
        print(f"{len(items)} items and the tokenizer of {model} written to {kit}")
        return
    shape = "1b" if args.model_1b else args.random_shape
    if shape:
        model = random_model(model, work / f"random-{shape}", shape)
    device, dtype = resolve_device_dtype(args.device, "auto")
    skip = {s for s in args.skip_metrics.split(",") if s}
    spec = bench_spec(model, args.max_new_tokens, args.batch_size, skip)
    cfg = LLMConfig(backend="transformers", model=model, max_new_tokens=args.max_new_tokens,
                    batch_size=args.batch_size, device=device, generation_mode="dynamic")
    n = len(items)
    mix = items["answer_type"].value_counts().to_dict()
    print(f"items: {n} {mix}; model {model} on {device} ({dtype}); max_new_tokens {args.max_new_tokens}, "
          f"batch {args.batch_size}; metrics per item type: "
          + ", ".join(f"{k}={len(v)}" for k, v in spec.metrics.items() if k in mix))

    # warm-up: load the models and metric resources once for both paths (not timed)
    from evaluation.runner import score_items

    warm = items.head(4)
    if db is not None:
        from ehrforge import warehouse

        with warehouse.session(db) as con:
            ours(warm, spec, cfg, con)
    else:
        ours(warm, spec, cfg, None)
    score_items(items.head(8), ["x"] * min(8, n), [0.5] * min(8, n), spec)

    if db is not None:
        from ehrforge import warehouse

        with warehouse.session(db) as con:
            wall, t_gen, rows = ours(items, spec, cfg, con)
            wall_cached, _, _ = ours(items, spec, cfg, con)
    else:
        wall, t_gen, rows = ours(items, spec, cfg, None)
        wall_cached = None
    report = {"n_items": n, "mix": {str(k): int(v) for k, v in mix.items()}, "device": device,
              "dtype": str(dtype).removeprefix("torch."), "shape": shape or "tiny model from the warehouse",
              "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
              "ours": {"seconds": wall, "items_per_s": n / wall, "generation_s": t_gen, "n_scores": len(rows)}}
    if wall_cached is not None:
        report["ours_cached"] = {"seconds": wall_cached, "items_per_s": n / wall_cached}

    def keep() -> None:
        if args.out_json:
            Path(args.out_json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out_json).write_text(json.dumps(report, indent=1))

    keep()  # before the naive loop: a run cut for time keeps the pipeline's figure
    print(f"ours : {wall:7.2f} s  {n / wall:7.2f} items/s", flush=True)
    from ehrforge.llm.backends import unload_backends

    unload_backends()
    naive_wall, n_scores = naive(items, spec, model, device, dtype)
    report["naive"] = {"seconds": naive_wall, "items_per_s": n / naive_wall, "n_scores": n_scores}
    report["speedup"] = naive_wall / wall
    keep()
    print(f"ours : {wall:7.2f} s  {n / wall:7.2f} items/s  (generation {t_gen:.2f} s, scoring {wall - t_gen:.2f} s, "
          f"{len(rows)} scores)")
    if wall_cached is not None:
        print(f"ours, re-run from the llm.calls cache: {wall_cached:7.2f} s  {n / wall_cached:7.2f} items/s")
    print(f"naive: {naive_wall:7.2f} s  {n / naive_wall:7.2f} items/s  ({n_scores} scores)")
    print(f"speed-up ours / naive: {naive_wall / wall:.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
