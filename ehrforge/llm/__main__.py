"""Quick use of the LLM client from the shell; answers are cached in llm.calls like any run.

    python -m ehrforge.llm --config configs/llm/local.yaml --prompt "Say hello" [key=value ...]
    python -m ehrforge.llm --config configs/llm/local.yaml --prompt "Is the sky blue?" --choices yes no
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="LLM config YAML (fields of ehrforge.llm.LLMConfig)")
    parser.add_argument("--prompt", action="append", required=True, help="user message; repeat for several prompts")
    parser.add_argument("--system", help="optional system message")
    parser.add_argument("--choices", nargs="+", help="score these choices instead of generating")
    parser.add_argument("--synthetic", action="store_true",
                        help="the prompts contain no warehouse text (lets them go to unapproved endpoints)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. temperature=0.7")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from ehrforge.config import load_config
    from ehrforge.errors import EhrforgeError
    from ehrforge.llm import LLMConfig, Request, run_batch, score_choices

    try:
        cfg = load_config(args.config, LLMConfig, args.overrides)
        system = [{"role": "system", "content": args.system}] if args.system else []
        reqs = [Request(id=f"cli-{i}", messages=system + [{"role": "user", "content": p}],
                        contains_phi=not args.synthetic) for i, p in enumerate(args.prompt)]
        out = score_choices(reqs, args.choices, cfg) if args.choices else run_batch(reqs, cfg)
    except EhrforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for r in out:
        print(json.dumps(r.model_dump(exclude={"logprobs"}) | ({"choice_probs": r.choice_probs} if r.choice_logprobs
                                                                 else {}), ensure_ascii=False))
    return 0 if all(r.ok for r in out) else 1


if __name__ == "__main__":
    sys.exit(main())
