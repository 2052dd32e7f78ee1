"""Task figures from item values, with percentile bootstrap 95% CIs (items resampled with replacement).

    value, lo, hi, n = aggregate_with_ci(values, labels, "auroc", n_boot=1000, seed=0)

`mean` ignores items whose value is None; `auroc`/`auprc` use items with both a value (P("yes")) and a label
and are undefined (None) when only one class is present (in the data, or in a resample: those are dropped).
"""

from __future__ import annotations

import numpy as np


def _point(values: np.ndarray, labels: np.ndarray | None, aggregation: str) -> float | None:
    if len(values) == 0:
        return None
    if aggregation == "mean":
        return float(values.mean())
    if labels is None or len(np.unique(labels)) < 2:
        return None
    from sklearn.metrics import average_precision_score, roc_auc_score

    if aggregation == "auroc":
        return float(roc_auc_score(labels, values))
    if aggregation == "auprc":
        return float(average_precision_score(labels, values))
    raise ValueError(f"unknown aggregation {aggregation!r}")


def _auroc_batch(values: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """AUROC of many resamples at once (Mann-Whitney U with average ranks for ties); NaN where one class."""
    from scipy.stats import rankdata

    v = values[idx]
    y = labels[idx].astype(bool)
    ranks = rankdata(v, axis=1)
    n_pos = y.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    u = (ranks * y).sum(axis=1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        out = u / (n_pos * n_neg)
    out[(n_pos == 0) | (n_neg == 0)] = np.nan
    return out


def aggregate_with_ci(
    values: list[float | None],
    labels: list[float | None] | None,
    aggregation: str,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float | None, float | None, float | None, int]:
    """(point estimate, CI low, CI high, n items used)."""
    vals = np.array([np.nan if v is None else v for v in values], dtype=float)
    if aggregation == "mean":
        keep = ~np.isnan(vals)
        labs = None
    else:
        labs = np.array([np.nan if v is None else v for v in (labels or [None] * len(vals))], dtype=float)
        keep = ~np.isnan(vals) & ~np.isnan(labs)
        labs = labs[keep]
    vals = vals[keep]
    n = len(vals)
    point = _point(vals, labs, aggregation)
    if point is None or n < 2 or n_boot <= 0:
        return point, None, None, n
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    if aggregation == "mean":
        stats = vals[idx].mean(axis=1)
    elif aggregation == "auroc":
        stats = _auroc_batch(vals, labs, idx)
    else:
        stats = np.array([_point(vals[i], labs[i], aggregation) or np.nan for i in idx])
    stats = stats[~np.isnan(stats)]
    if len(stats) == 0:
        return point, None, None, n
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return point, float(lo), float(hi), n
