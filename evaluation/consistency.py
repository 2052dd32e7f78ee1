"""Consistency of sampled answers: k seeded samples per item, pass@k and pass^k.

    sample_rows, score_rows = sample_and_score(items, spec, model, con, run, progress)

For each item (answer types in `consistency.answer_types`, at most `max_items` per task), n = `consistency.n_samples`
answers are sampled at `consistency.temperature` with seeds generation.seed + 1 ... + n, through the LLM client (so
they are cached in llm.calls and a re-run sends nothing). Each sample is right when the answer type's
`correct_metric` scores it >= `threshold`. With c right out of n, per item (unbiased for k <= n):
    pass@k = 1 - C(n - c, k) / C(n, k)     at least one of k samples is right (Chen et al. 2021, Codex)
    pass^k = C(c, k) / C(n, k)             all k samples are right (Yao et al. 2024, tau-bench)
They are registered metrics (kind "consistency", aggregation mean), so the task figure, its bootstrap CI, the
leaderboard and the fine-tune comparison treat them like any other metric. Every sample is kept in
evaluation.samples next to whether it was right.
"""

from __future__ import annotations

import json
from math import comb

import pandas as pd

from evaluation.metrics import MetricInput, get_metric


def pass_at_k(n: int, c: int, k: int) -> float:
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    return comb(c, k) / comb(n, k)


def sample_and_score(items: pd.DataFrame, spec, model, con, run, progress: bool) -> tuple[list[dict], list[dict]]:
    from ehrforge.llm import Request, run_batch

    cfg = spec.consistency
    sel = items[items["answer_type"].isin(cfg.answer_types)]
    if cfg.max_items:
        sel = sel.groupby("task", sort=True).head(cfg.max_items)
    if sel.empty or not cfg.n_samples:
        return [], []
    n, k = cfg.n_samples, cfg.k or cfg.n_samples
    seeds = [spec.generation.seed + 1 + j for j in range(n)]
    reqs = [Request(id=f"{r.instruction_id}#sample{j}", messages=r.messages, temperature=cfg.temperature, seed=s,
                    max_new_tokens=spec.generation.max_new_tokens)
            for r in sel.itertuples() for j, s in enumerate(seeds)]
    responses = {r.request_id: r for r in run_batch(reqs, model.llm_config, run=run, con=con, progress=progress)}
    samples, scores = [], []
    for (task, answer_type), grp in sel.groupby(["task", "answer_type"], sort=True):
        metric = get_metric(cfg.correct_metric[answer_type])
        params = spec.metric_params.get(metric.name, {})
        for it in grp.itertuples():
            resps = [responses.get(f"{it.instruction_id}#sample{j}") for j in range(n)]
            texts = [r.text if r is not None and r.ok else None for r in resps]
            values = metric.score([MetricInput(prediction=t or "", reference=str(it.answer), answer_type=answer_type,
                                               context=it.context or "") for t in texts], **params)
            right = [None if t is None or v is None else v >= cfg.threshold for t, v in zip(texts, values)]
            for j, (resp, text, ok) in enumerate(zip(resps, texts, right)):
                samples.append({"instruction_id": it.instruction_id, "task": task, "sample_index": j,
                                "seed": seeds[j], "temperature": cfg.temperature, "prediction": text,
                                "correct_metric": metric.name, "is_correct": ok,
                                "cache_key": None if resp is None else resp.cache_key,
                                "error": "no response" if resp is None else resp.error})
            complete = all(ok is not None for ok in right)
            c = sum(bool(ok) for ok in right)
            details = json.dumps({"n": n, "k": k, "n_correct": c, "correct_metric": metric.name})
            for name, fn in (("pass_at_k", pass_at_k), ("pass_hat_k", pass_hat_k)):
                scores.append({"instruction_id": it.instruction_id, "task": task, "metric": name,
                               "value": fn(n, c, k) if complete else None, "label": None, "details": details})
    return samples, scores
