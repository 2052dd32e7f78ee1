"""LLM client throughput, with ratios against baselines measured in the same process.

    python bench/bench_llm.py                  # CPU: transformers backend vs naive loop, openai backend vs
                                               # `transformers serve` at concurrency 1/4/16, cached re-run = 0 calls
    python bench/bench_llm.py --gpu            # GPU: ~1B random-init Llama (bf16), 64 prompts x 512 tokens, 128 new
    python bench/bench_llm.py --part transformers --n-prompts 32 --prompt-tokens 256 --new-tokens 64

Parts: `transformers` (run_batch over the in-process backend, each generation_mode, vs one-prompt-at-a-time
`generate` on the same model object), `openai` (run_batch against a local `transformers serve`), `gpu` (the
backend's batched path on pre-tokenized prompts; imports only torch/transformers, no duckdb/openai, so it runs on
the GPU machine). Figures go to stdout (and, with --out-json, for the gpu part to a JSON file rewritten after every
row, so a run cut for time keeps the rows that finished); nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

log = logging.getLogger("bench_llm")
WORDS = ("patient admitted chest pain dyspnea lactate creatinine sepsis discharge follow up clinic stable heart "
         "rate blood pressure oxygen saturation antibiotics culture negative yes no").split()


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def naive_loop(model, prompts: list[list[int]], new_tokens: int, pad_id: int) -> tuple[int, float]:
    """The baseline: one `generate` per prompt."""
    import torch

    start = time.perf_counter()
    n = 0
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p], device=model.device)
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad_id)
            n += out.shape[1] - ids.shape[1]
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return n, time.perf_counter() - start


def row(name: str, tokens: int, seconds: float, base: float | None) -> float:
    rate = tokens / seconds if seconds else 0.0
    ratio = f"{rate / base:6.1f}x" if base else "   1.0x"
    print(f"  {name:44s} {tokens:7d} tok {seconds:8.2f} s {rate:9.1f} tok/s  {ratio}", flush=True)
    return rate


# --- CPU: transformers backend through run_batch ----------------------------------------------------------------
def bench_transformers(args, model_dir: Path, db: Path) -> None:
    from ehrforge.llm import LLMConfig, Request, RunStats, run_batch
    from ehrforge.llm.backends import get_backend

    rng = random.Random(0)
    reqs = [Request(id=f"t{i}", messages=[{"role": "user", "content": words(rng, args.prompt_tokens)}])
            for i in range(args.n_prompts)]
    base_cfg = LLMConfig(backend="transformers", model=str(model_dir), max_new_tokens=args.new_tokens,
                         ignore_eos=True, batch_size=args.n_prompts, device="cpu")
    backend = get_backend(base_cfg)
    prompts = [backend.prompt_ids(r.messages) for r in reqs]
    print(f"\ntransformers backend, CPU ({os.cpu_count()} cores, torch threads "
          f"{__import__('torch').get_num_threads()}): {len(reqs)} prompts x ~{sum(map(len, prompts)) // len(prompts)} "
          f"tokens, {args.new_tokens} new tokens each")
    naive_loop(backend.model, prompts[:1], 4, backend.tokenizer.pad_token_id)  # warm-up
    k = max(1, min(args.naive_prompts, len(prompts)))
    # best of --repeat, variants interleaved: this machine may be shared, and the fastest run is the least disturbed
    best: dict[str, tuple[int, float]] = {}
    seed = 0
    for _ in range(args.repeat):
        n, s = naive_loop(backend.model, prompts[:k], args.new_tokens, backend.tokenizer.pad_token_id)
        name = f"naive per-prompt generate ({k} prompts)"
        best[name] = min(best.get(name, (n, float("inf"))), (n, s), key=lambda x: x[1])
        for mode in ("dynamic", "static"):
            seed += 1  # a new seed each time: otherwise the second repeat would be answered by the cache
            cfg = base_cfg.model_copy(update={"generation_mode": mode, "seed": seed})
            stats = RunStats()
            run_batch(reqs, cfg, progress=False, stats=stats, db_path=db)
            name = f"run_batch mode={mode} batch={cfg.batch_size}"
            best[name] = min(best.get(name, (0, float("inf"))), (stats.completion_tokens, stats.wall_s),
                             key=lambda x: x[1])
    base = None
    for name, (n, s) in best.items():
        rate = row(name + f" (best of {args.repeat})", n, s, base)
        base = base or rate
    stats = RunStats()
    run_batch(reqs, base_cfg.model_copy(update={"generation_mode": "dynamic", "seed": 1}), progress=False,
              stats=stats, db_path=db)  # seed 1 / dynamic ran above
    print(f"  cached re-run: {stats.n_calls} calls, {stats.n_cached}/{stats.n_requests} from cache, "
          f"{stats.wall_s:.2f} s")


# --- CPU: openai backend against a local server ------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_openai(args, model_dir: Path, db: Path) -> None:
    from ehrforge.llm import LLMConfig, Request, RunStats, run_batch

    port = free_port()
    exe = Path(sys.executable).parent / "transformers"
    logf = open(db.parent / "serve.log", "w")
    cmd = [str(exe), "serve", str(model_dir), "--port", str(port), "--host", "127.0.0.1", "--device", "cpu"]
    if not args.serve_plain:
        cmd.append("--continuous-batching")  # batches concurrent requests, as vLLM does
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"transformers serve exited: {(db.parent / 'serve.log').read_text()[-2000:]}")
                time.sleep(0.5)
        flags = "" if args.serve_plain else " --continuous-batching"
        print(f"\nopenai backend -> `transformers serve{flags}` on 127.0.0.1 ({args.n_requests} requests per level, "
              f"{args.openai_new_tokens} new tokens)")
        rng = random.Random(1)
        base = None
        for level in (1, 4, 16):
            cfg = LLMConfig(backend="openai", base_url=f"http://127.0.0.1:{port}/v1", model=str(model_dir),
                            max_new_tokens=args.openai_new_tokens, concurrency=level, timeout_s=300)
            reqs = [Request(id=f"o{level}-{i}", messages=[{"role": "user", "content": words(rng, 32)}])
                    for i in range(args.n_requests)]
            stats = RunStats()
            run_batch(reqs, cfg, progress=False, stats=stats, db_path=db)
            rate = row(f"concurrency={level:2d} ({stats.n_calls} calls, {stats.n_calls / stats.wall_s:.1f} calls/s)",
                       stats.completion_tokens, stats.wall_s, base)
            base = base or rate
        stats = RunStats()
        run_batch(reqs, cfg, progress=False, stats=stats, db_path=db)
        print(f"  cached re-run: {stats.n_calls} calls, {stats.n_cached}/{stats.n_requests} from cache, "
              f"{stats.wall_s:.2f} s")
    finally:
        proc.terminate()
        proc.wait(10)


# --- GPU: ~1B random Llama, the backend's batched path vs the naive loop --------------------------------------------
def bench_gpu(args) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from ehrforge.llm.backends.transformers_backend import TransformersBackend
    from ehrforge.tiny_model import train_tokenizer

    try:
        from ehrforge.llm.config import LLMConfig
    except ImportError:  # the GPU machine may lack pydantic: the backend only reads attributes
        from types import SimpleNamespace

        def LLMConfig(**kw):  # noqa: N802
            base = dict(backend="transformers", adapter=None, dtype="auto", device="auto", max_model_len=None)
            return SimpleNamespace(**(base | kw))

    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                 num_key_value_heads=8, vocab_size=32000) if not args.small else \
        dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=2048)
    tok = train_tokenizer([" ".join(WORDS)] * 10, vocab_size=300)
    cfg = LlamaConfig(**shape, max_position_embeddings=2048, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16 if device == "cuda" else torch.float32).eval()
    model.generation_config = GenerationConfig(pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    n_params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(10, shape["vocab_size"], (args.n_prompts, args.prompt_tokens), generator=g).tolist()
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"\nGPU bench on {name}: random Llama {n_params / 1e9:.2f}B params, {model.dtype}; {len(prompts)} prompts x "
          f"{args.prompt_tokens} tokens, {args.new_tokens} new tokens (ignore_eos)")
    report = {"device": name, "n_params": n_params, "dtype": str(model.dtype).removeprefix("torch."),
              "n_prompts": len(prompts), "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
              "rows": []}

    def keep(**r) -> None:
        report["rows"].append(r)
        if args.out_json:
            Path(args.out_json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out_json).write_text(json.dumps(report, indent=1))

    naive_loop(model, prompts[:1], 4, tok.pad_token_id)
    k = max(1, min(args.naive_prompts, len(prompts)))
    n, s = naive_loop(model, prompts[:k], args.new_tokens, tok.pad_token_id)
    base = row(f"naive per-prompt generate ({k} prompts)", n, s, None)
    keep(name="naive", mode="naive", batch_size=1, n_prompts=k, tokens=n, seconds=s, tokens_per_s=n / s)
    for mode in args.modes.split(","):
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            llm_cfg = LLMConfig(backend="transformers", model="in-memory", generation_mode=mode, batch_size=bs,
                                max_new_tokens=args.new_tokens, ignore_eos=True)
            backend = TransformersBackend(llm_cfg, model=model, tokenizer=tok)
            params = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": args.new_tokens, "seed": 0,
                      "ignore_eos": True, "top_logprobs": 0}
            try:
                backend.generate_ids(prompts[:bs], params)  # warm-up (compilation, allocator)
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                n = 0
                for i in range(0, len(prompts), bs):
                    n += sum(r.completion_tokens for r in backend.generate_ids(prompts[i:i + bs], params))
                if device == "cuda":
                    torch.cuda.synchronize()
                s = time.perf_counter() - start
                rate = row(f"backend mode={mode} batch={bs}", n, s, base)
                keep(name=f"{mode} b{bs}", mode=mode, batch_size=bs, n_prompts=len(prompts), tokens=n, seconds=s,
                     tokens_per_s=rate, vs_naive=rate / base)
            except Exception as exc:  # noqa: BLE001 - a mode that fails is reported, the others still run
                print(f"  backend mode={mode} batch={bs}: FAILED {type(exc).__name__}: {str(exc)[:200]}")
                keep(name=f"{mode} b{bs}", mode=mode, batch_size=bs, error=f"{type(exc).__name__}: {str(exc)[:200]}")
    if device == "cuda":
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        report["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        if args.out_json:
            Path(args.out_json).write_text(json.dumps(report, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "transformers", "openai", "gpu"], default="all")
    parser.add_argument("--gpu", action="store_true", help="same as --part gpu with the 1B / 64x512 / 128 defaults")
    parser.add_argument("--small", action="store_true", help="gpu part with a tiny shape (to check it runs on CPU)")
    parser.add_argument("--n-prompts", type=int, default=None)
    parser.add_argument("--prompt-tokens", type=int, default=None)
    parser.add_argument("--new-tokens", type=int, default=None)
    parser.add_argument("--naive-prompts", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2, help="CPU transformers part: best of N, interleaved")
    parser.add_argument("--n-requests", type=int, default=32)
    parser.add_argument("--openai-new-tokens", type=int, default=16)
    parser.add_argument("--serve-plain", action="store_true",
                        help="start transformers serve without --continuous-batching (one request at a time)")
    parser.add_argument("--modes", default="dynamic,static,compile")
    parser.add_argument("--batch-sizes", default="64")
    parser.add_argument("--out-json", help="gpu part: write the rows to this JSON file (rewritten after every row)")
    parser.add_argument("--hidden", type=int, default=256, help="CPU model hidden size")
    parser.add_argument("--layers", type=int, default=4, help="CPU model layers")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    gpu = args.gpu or args.part == "gpu"
    args.n_prompts = args.n_prompts or (64 if gpu else 16)
    args.prompt_tokens = args.prompt_tokens or (512 if gpu else 128)
    args.new_tokens = args.new_tokens or (128 if gpu else 32)
    if gpu:
        bench_gpu(args)
        return
    from ehrforge.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = random.Random(2)
        model_dir = build_tiny_model(tmp / "model", [words(rng, 64) for _ in range(400)], vocab_size=2048,
                                     hidden_size=args.hidden, num_layers=args.layers)
        print(f"model: random Llama hidden={args.hidden} layers={args.layers} vocab=2048 (built in {tmp})")
        db = tmp / "bench.duckdb"
        if args.part in ("all", "transformers"):
            bench_transformers(args, model_dir, db)
        if args.part in ("all", "openai"):
            bench_openai(args, model_dir, db)


if __name__ == "__main__":
    main()
