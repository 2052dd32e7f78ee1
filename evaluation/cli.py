"""Evaluate models on an instruction set's test split and write predictions, scores and task figures to the
warehouse, then rebuild the results marts.

    python -m evaluation.cli --config evaluation/specs/demo.yaml [key=value ...]    # = make evaluate CONFIG=...
    python -m evaluation.cli --config evaluation/specs/demo.yaml data.subset.n_per_task=5 bootstrap.n=200
    python -m evaluation.cli --list-metrics

Exit status: 0 done; 2 bad spec, input or config (incl. marts from an unfinished or failed build, a PHI-guard
refusal); 1 the run failed. Any error or refusal marks the model's run `failed` in meta.runs with the reason.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="evaluation spec (evaluation/specs/<name>.yaml)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-build", action="store_true", help="skip `dbt build --select source:evaluation+`")
    parser.add_argument("--list-metrics", action="store_true")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. data.subset.n_per_task=5")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    from ehrforge.errors import EhrforgeError, exit_code

    try:
        if args.list_metrics:
            from evaluation.metrics import all_metrics

            for m in sorted(all_metrics().values(), key=lambda m: m.name):
                print(f"{m.name:22} {'higher' if m.higher_is_better else 'lower ':6} {m.aggregation:6} "
                      f"{','.join(m.answer_types) or '(' + m.kind + ')':28} {m.description}")
            return
        if not args.config:
            parser.error("--config is required (e.g. --config evaluation/specs/demo.yaml)")
        from evaluation.runner import evaluate
        from evaluation.spec import load_spec

        spec = load_spec(args.config, args.overrides)
        summaries = evaluate(spec, progress=not args.no_progress,
                             build_results=False if args.no_build else None)
    except EhrforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exit_code(exc))  # 2 bad input or config, 1 the run failed (docs/crash-safety.md)
    for s in summaries:
        print(f"\n{s.model_name}: run {s.run_id} [{s.status}] {s.n_items} items, {s.n_llm_calls} LLM calls, "
              f"{s.n_cached} from cache, {s.n_failed} failed, {s.wall_s:.1f}s ({s.items_per_s:.1f} items/s)")
        if not s.task_metrics.empty:
            tm = s.task_metrics
            for r in tm.itertuples():
                val = "n/a" if r.value is None or r.value != r.value else f"{r.value:.3f}"
                ci = "" if r.ci_low is None or r.ci_low != r.ci_low else f"  [{r.ci_low:.3f}, {r.ci_high:.3f}]"
                print(f"  {r.task:28} {r.metric:22} {val:>7}{ci}  (n={r.n_items})")
        if s.judge:
            j = s.judge
            rate = "n/a" if j["parse_rate"] is None else f"{j['parse_rate']:.0%}"
            cons = "n/a" if j["position_consistency"] is None else f"{j['position_consistency']:.0%}"
            print(f"  judge: {j['n_parsed']}/{j['n_judgements']} verdicts parsed ({rate}); preference survived the "
                  f"order swap on {j['n_position_consistent']}/{j['n_both_orders_parsed']} items ({cons})")
    print("\nresults: select * from results.results_leaderboard; see also results.results_finetune_vs_base")


if __name__ == "__main__":
    main()
