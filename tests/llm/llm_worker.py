"""A worker process for the kill-and-resume test: runs one batch against an OpenAI-compatible server.

    python tests/llm/llm_worker.py <base_url> <model> <n_requests> [concurrency]

Uses $EHRFORGE_DUCKDB for the cache, with no connection held between flushes (con=None)."""

import logging
import sys

from ehrforge.llm import LLMConfig, Request, RunStats, run_batch

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    base_url, model, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    concurrency = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    cfg = LLMConfig(backend="openai", base_url=base_url, model=model, max_new_tokens=4, concurrency=concurrency,
                    max_retries=0)
    stats = RunStats()
    out = run_batch([Request(id=f"p{i}", messages=[{"role": "user", "content": f"prompt number {i}"}])
                     for i in range(n)], cfg, progress=False, stats=stats)
    assert all(r.ok for r in out), [r.error for r in out if not r.ok]
    print(f"calls={stats.n_calls} cached={stats.n_cached}")
