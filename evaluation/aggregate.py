"""Task figures from item values, with percentile bootstrap 95% CIs (items resampled with replacement).

    value, lo, hi, n = aggregate_with_ci(values, labels, "auroc", n_boot=1000, seed=0)

An aggregation turns item values into one figure; each is registered here once (name, whether it needs labels,
its point estimate and, optionally, a vectorised estimate over many resamples), and metrics name it:

    @register_aggregation("auroc", needs_labels=True, batch=_auroc_batch)
    def auroc(values, labels): ...

`mean` ignores items whose value is None; label-based ones (`auroc`, `auprc`, `ece`) use items with both a value
(P("yes")) and a label; the ranking ones are undefined (None) when only one class is present (in the data, or in a
resample: those are dropped), `ece` (calibration) is defined with one class too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Aggregation:
    name: str
    point_fn: Callable[[np.ndarray, np.ndarray | None], float]
    needs_labels: bool
    batch_fn: Callable[[np.ndarray, np.ndarray | None, np.ndarray], np.ndarray] | None = None
    needs_both_classes: bool | None = None  # default: = needs_labels (a ranking figure needs both classes)

    def point(self, values: np.ndarray, labels: np.ndarray | None) -> float | None:
        if len(values) == 0:
            return None
        if self.needs_labels and labels is None:
            return None
        both = self.needs_labels if self.needs_both_classes is None else self.needs_both_classes
        if both and len(np.unique(labels)) < 2:
            return None
        return float(self.point_fn(values, labels))

    def resampled(self, values: np.ndarray, labels: np.ndarray | None, idx: np.ndarray) -> np.ndarray:
        """The figure on each resample (rows of `idx`); NaN where it is undefined."""
        if self.batch_fn is not None:
            return self.batch_fn(values, labels, idx)
        return np.array([np.nan if (p := self.point(values[i], None if labels is None else labels[i])) is None else p
                         for i in idx], dtype=float)


AGGREGATIONS: dict[str, Aggregation] = {}


def register_aggregation(name: str, *, needs_labels: bool, batch=None, needs_both_classes: bool | None = None):
    def wrap(fn):
        if name in AGGREGATIONS and AGGREGATIONS[name].point_fn is not fn:
            raise ValueError(f"aggregation {name!r} registered twice")
        AGGREGATIONS[name] = Aggregation(name, fn, needs_labels, batch, needs_both_classes)
        return fn

    return wrap


def get_aggregation(name: str) -> Aggregation:
    if name not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {name!r}; registered: {', '.join(sorted(AGGREGATIONS))}")
    return AGGREGATIONS[name]


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


@register_aggregation("mean", needs_labels=False, batch=lambda values, labels, idx: values[idx].mean(axis=1))
def mean(values: np.ndarray, labels: np.ndarray | None) -> float:
    return values.mean()


@register_aggregation("auroc", needs_labels=True, batch=_auroc_batch)
def auroc(values: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(labels, values)


def _auprc_batch(values: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Average precision of many resamples at once, as scikit-learn computes it (sum over distinct thresholds of
    recall increase x precision, tied scores forming one threshold); NaN where one class."""
    v = values[idx]
    y = labels[idx].astype(float)
    order = np.argsort(-v, axis=1, kind="stable")
    v = np.take_along_axis(v, order, axis=1)
    y = np.take_along_axis(y, order, axis=1)
    tp = np.cumsum(y, axis=1)
    n_pos = tp[:, -1]
    last = np.ones_like(v, dtype=bool)          # the last item of each run of tied scores is a threshold
    last[:, :-1] = v[:, :-1] != v[:, 1:]
    at = np.where(last, tp, 0.0)
    prev = np.zeros_like(at)
    prev[:, 1:] = np.maximum.accumulate(at, axis=1)[:, :-1]
    precision = tp / np.arange(1, v.shape[1] + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(last, (tp - prev) * precision, 0.0).sum(axis=1) / n_pos
    out[(n_pos == 0) | (n_pos == v.shape[1])] = np.nan
    return out


@register_aggregation("auprc", needs_labels=True, batch=_auprc_batch)
def auprc(values: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return average_precision_score(labels, values)


def _ece_batch(values: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    from evaluation.calibration import ece_batch

    return ece_batch(values, labels, idx)


@register_aggregation("ece", needs_labels=True, batch=_ece_batch, needs_both_classes=False)
def ece(values: np.ndarray, labels: np.ndarray) -> float:
    """Expected calibration error of P("yes") (evaluation.calibration: 10 equal-width bins, count-weighted)."""
    from evaluation.calibration import expected_calibration_error

    return expected_calibration_error(values, labels)


def aggregate_with_ci(
    values: list[float | None],
    labels: list[float | None] | None,
    aggregation: str,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float | None, float | None, float | None, int]:
    """(point estimate, CI low, CI high, n items used)."""
    agg = get_aggregation(aggregation)
    vals = np.array([np.nan if v is None else v for v in values], dtype=float)
    if not agg.needs_labels:
        keep = ~np.isnan(vals)
        labs = None
    else:
        labs = np.array([np.nan if v is None else v for v in (labels or [None] * len(vals))], dtype=float)
        keep = ~np.isnan(vals) & ~np.isnan(labs)
        labs = labs[keep]
    vals = vals[keep]
    n = len(vals)
    point = agg.point(vals, labs)
    if point is None or n < 2 or n_boot <= 0:
        return point, None, None, n
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    stats = agg.resampled(vals, labs, idx)
    stats = stats[~np.isnan(stats)]
    if len(stats) == 0:
        return point, None, None, n
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return point, float(lo), float(hi), n
