"""Fine-tune vs base with a paired bootstrap: the CI of the difference, resampling the SAME items for both models.

Independent CIs of two models overlap far more often than the difference is uncertain (their item-level errors are
correlated); resampling items jointly and taking the percentile interval of (fine-tune - base) is the right test.

    rows = comparison_rows(con, finetune_run_id, base_run_id, n_boot=1000, seed=0)

Pairs follow the results_finetune_vs_base rule: a succeeded adapter/merged run and the succeeded base run of the same
spec, spec version, data version and split whose model_path is the fine-tune's base_model_path.
"""

from __future__ import annotations

import numpy as np

from evaluation.aggregate import get_aggregation

PAIRS_SQL = """
select ft.run_id, b.run_id
from evaluation.eval_runs ft
join evaluation.eval_runs b
  on b.model_kind = 'base' and b.model_path = ft.base_model_path and b.spec_name = ft.spec_name
 and b.spec_version = ft.spec_version and b.data_version = ft.data_version and b.split = ft.split
where ft.model_kind in ('adapter', 'merged') and ft.status = 'succeeded' and b.status = 'succeeded'
  and (ft.run_id in (select unnest(?::varchar[])) or b.run_id in (select unnest(?::varchar[])))
order by 1, 2
"""


def pairs_touching(con, run_ids: list[str]) -> list[tuple[str, str]]:
    return [tuple(r) for r in con.execute(PAIRS_SQL, [run_ids, run_ids]).fetchall()]


def paired_delta(ft: np.ndarray, base: np.ndarray, labels: np.ndarray | None, aggregation: str, n_boot: int,
                 seed: int, alpha: float = 0.05) -> tuple[float | None, float | None, float | None]:
    agg = get_aggregation(aggregation)
    p_ft, p_base = agg.point(ft, labels), agg.point(base, labels)
    if p_ft is None or p_base is None:
        return None, None, None
    delta = p_ft - p_base
    n = len(ft)
    if n < 2 or n_boot <= 0:
        return delta, None, None
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    diffs = agg.resampled(ft, labels, idx) - agg.resampled(base, labels, idx)
    diffs = diffs[~np.isnan(diffs)]
    if not len(diffs):
        return delta, None, None
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return delta, float(lo), float(hi)


def comparison_rows(con, finetune_run_id: str, base_run_id: str, n_boot: int, seed: int) -> list[dict]:
    df = con.execute("""
        select f.task, f.metric, m.aggregation, f.instruction_id, f.value as fv, b.value as bv, f.label
        from evaluation.scores f
        join evaluation.scores b
          on b.run_id = ? and b.instruction_id = f.instruction_id and b.metric = f.metric
        join evaluation.task_metrics m
          on m.run_id = f.run_id and m.task = f.task and m.metric = f.metric
        where f.run_id = ? and f.value is not null and b.value is not null
        order by f.task, f.metric, f.instruction_id""", [base_run_id, finetune_run_id]).df()
    rows = []
    for (task, metric, aggregation), g in df.groupby(["task", "metric", "aggregation"], sort=True):
        needs_labels = get_aggregation(aggregation).needs_labels
        if needs_labels:
            g = g[g["label"].notna()]
        labels = g["label"].to_numpy(dtype=float) if needs_labels else None
        delta, lo, hi = paired_delta(g["fv"].to_numpy(dtype=float), g["bv"].to_numpy(dtype=float), labels,
                                     aggregation, n_boot, seed)
        rows.append({"finetune_run_id": finetune_run_id, "base_run_id": base_run_id, "task": task, "metric": metric,
                     "aggregation": aggregation, "n_paired": len(g), "delta": delta, "delta_ci_low": lo,
                     "delta_ci_high": hi, "n_bootstrap": n_boot})
    return rows
