"""Calibration of yes/no risk scores: reliability-diagram bins and the expected calibration error (ECE).

    bins = reliability_bins(p_yes, labels)          # N_BINS equal-width bins over [0, 1]
    ece = expected_calibration_error(p_yes, labels) # sum over bins of (n_bin / n) * |observed rate - mean P|

The same bins feed the `ece` aggregation (evaluation.aggregate), evaluation.calibration_bins (one row per run,
task and bin; the reliability diagram of the report) and the `brier` metric's neighbour in the leaderboard.
Ten equal-width bins, each closed on the right: the binning of scikit-learn's `calibration_curve`
(strategy "uniform"), which meds-evaluation uses, so the unweighted mean gap over non-empty bins equals its
`calibration_error` (tests/evaluation/test_clinical_report.py checks it).
"""

from __future__ import annotations

import numpy as np

N_BINS = 10


def bin_index(p: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Bin of each probability: [0, 0.1], (0.1, 0.2], ..., (0.9, 1.0] (scikit-learn's uniform binning)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], np.asarray(p, dtype=float))


def reliability_bins(p, labels, n_bins: int = N_BINS) -> list[dict]:
    """Non-empty bins: index, edges, n_items, mean predicted probability, observed rate of yes."""
    p = np.asarray(p, dtype=float)
    y = np.asarray(labels, dtype=float)
    idx = bin_index(p, n_bins)
    out = []
    for b in range(n_bins):
        sel = idx == b
        if not sel.any():
            continue
        out.append({"bin_index": b, "bin_low": b / n_bins, "bin_high": (b + 1) / n_bins, "n_items": int(sel.sum()),
                    "mean_predicted": float(p[sel].mean()), "observed_rate": float(y[sel].mean())})
    return out


def expected_calibration_error(p, labels, n_bins: int = N_BINS) -> float:
    p = np.asarray(p, dtype=float)
    if len(p) == 0:
        return float("nan")
    return float(sum(b["n_items"] / len(p) * abs(b["observed_rate"] - b["mean_predicted"])
                     for b in reliability_bins(p, labels, n_bins)))


def ece_batch(values: np.ndarray, labels: np.ndarray, idx: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """ECE of many resamples at once (rows of `idx`): per-bin sums by bincount on offset bin ids."""
    p, y = values[idx], labels[idx].astype(float)
    n_rs, n = p.shape
    b = bin_index(p.ravel(), n_bins).reshape(n_rs, n) + (np.arange(n_rs) * n_bins)[:, None]
    size = n_rs * n_bins
    cnt = np.bincount(b.ravel(), minlength=size).reshape(n_rs, n_bins)
    sp = np.bincount(b.ravel(), weights=p.ravel(), minlength=size).reshape(n_rs, n_bins)
    sy = np.bincount(b.ravel(), weights=y.ravel(), minlength=size).reshape(n_rs, n_bins)
    return np.abs(sy - sp).sum(axis=1) / n  # sum_b n_b/n * |mean_y - mean_p| = sum_b |sum_y - sum_p| / n
