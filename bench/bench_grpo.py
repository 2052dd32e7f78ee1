"""GRPO step time and the share of it spent generating completions.

    python bench/bench_grpo.py --config training/configs/smollm2/135m_grpo.yaml train.max_steps=6
    python bench/bench_grpo.py --config training/configs/demo/tiny_grpo.yaml          # the tiny model, seconds
    make bench-grpo ARGS="--config training/configs/smollm2/135m_grpo.yaml train.max_steps=6"

Runs `training.launch.train` on the config (a real run: prepared data, GRPOTrainer, records in training.runs and
training.reward_curve) with TRL's generation method wrapped in a timer, then prints per step: step time (TRL's
`step_time`), generation time, generation share, completion length and reward, and the means over the steps after
the first (which carries start-up costs). Needs the warehouse the config reads (EHRFORGE_DUCKDB) with its
instruction set. `--retrain` is implied: a finished run would otherwise be reported, not timed.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="training/configs/demo/tiny_grpo.yaml")
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the training config")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch
    from trl import GRPOTrainer

    from training.config import load_train_config
    from training.launch import train

    gen_times: list[float] = []
    original = GRPOTrainer._generate

    def timed(self, *a, **kw):
        t0 = time.perf_counter()
        try:
            return original(self, *a, **kw)
        finally:
            gen_times.append(time.perf_counter() - t0)

    GRPOTrainer._generate = timed
    cfg = load_train_config(args.config, args.overrides)
    t0 = time.perf_counter()
    (summary,) = train(cfg, retrain=True)
    wall = time.perf_counter() - t0
    curve: dict[int, dict] = {}
    for r in summary["reward_curve"]:
        curve.setdefault(r["step"], {})[r["metric"]] = r["value"]
    steps = sorted(curve)
    rows = []
    print(f"{'step':>4} {'step_s':>8} {'gen_s':>8} {'gen_share':>9} {'compl_len':>9} {'reward':>7} {'kl':>8}")
    for step, gen in zip(steps, gen_times):  # one generation call per step (steps_per_generation = grad_accum = 1)
        c = curve[step]
        share = gen / c["step_time"] if c.get("step_time") else float("nan")
        rows.append({"step": step, "step_s": c.get("step_time"), "generate_s": gen, "generation_share": share,
                     "completion_mean_length": c.get("completions/mean_length"), "reward": c.get("reward"),
                     "kl": c.get("kl")})
        print(f"{step:>4} {c.get('step_time', float('nan')):>8.2f} {gen:>8.2f} {share:>9.2f} "
              f"{c.get('completions/mean_length', float('nan')):>9.1f} {c.get('reward', float('nan')):>7.3f} "
              f"{c.get('kl', float('nan')):>8.4f}")
    later = rows[1:] or rows
    mean = {k: sum(r[k] for r in later) / len(later) for k in ("step_s", "generate_s", "generation_share")}
    g = cfg.grpo
    result = {
        "config": args.config, "overrides": args.overrides, "base_model": cfg.model.base,
        "completions_per_step": g.prompts_per_step * g.num_generations,
        "max_completion_tokens": g.max_completion_tokens, "steps": len(rows), "wall_s": wall,
        "mean_after_first": mean, "first_reward": summary.get("first_reward"), "final_reward": summary.get("final_reward"),
        "device": "cuda" if torch.cuda.is_available() else "cpu", "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(), "per_step": rows,
    }
    print(f"mean over steps 2..{len(rows)}: step {mean['step_s']:.2f} s, generation {mean['generate_s']:.2f} s "
          f"({100 * mean['generation_share']:.0f} % of the step); {result['completions_per_step']} completions of "
          f"<= {g.max_completion_tokens} tokens per step; wall {wall:.1f} s")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
