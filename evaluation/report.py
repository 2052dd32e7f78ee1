"""Render the results marts as a small HTML report with PNG plots.

    python -m evaluation.report [--spec demo] [--out reports]        # = make report

Reads results.results_leaderboard, results_finetune_vs_base, results_calibration and results_subgroups (run
`make evaluate` first). For every spec, its latest version and data version: a leaderboard plot (the headline metric
of each task, one bar per model, 95% CI whiskers), one plot per task (every metric), the fine-tune vs base deltas,
calibration (reliability diagram, Brier, ECE), subgroups (the largest gap per task and metric), consistency
(pass@k, pass^k of sampled answers), and the tables behind them. When results.results_icd_utility has rows
(`python -m evaluation.icd_utility`), the ICD-coding utility of synthetic notes: real- vs synthetic-trained coder
(micro / macro F1) and per-code F1 against the code's train frequency.
"""

from __future__ import annotations

import argparse
import html
import logging
import re
import sys
from pathlib import Path

import pandas as pd

from ehrforge.errors import EhrforgeError

log = logging.getLogger(__name__)

HEADLINE = ["auroc", "numeric_match", "set_f1", "judge_score", "rouge_l", "accuracy", "exact_match"]
LEADERBOARD = "results.results_leaderboard"
COMPARISON = "results.results_finetune_vs_base"
CALIBRATION = "results.results_calibration"
SUBGROUPS = "results.results_subgroups"
CONSISTENCY_METRICS = ("pass_at_k", "pass_hat_k")
ICD_UTILITY = "results.results_icd_utility"
ICD_UTILITY_PER_CODE = "evaluation.icd_utility_per_code"


def load_icd_utility(con) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The latest ICD-utility run: its results mart rows and per-code rows (empty frames when there is none)."""
    from ehrforge import warehouse

    if not (warehouse.table_exists(con, ICD_UTILITY) and warehouse.table_exists(con, ICD_UTILITY_PER_CODE)):
        return pd.DataFrame(), pd.DataFrame()
    util = con.execute(f"select * from {ICD_UTILITY} where run_id = (select run_id from {ICD_UTILITY} "
                       "order by created_at desc limit 1) order by metric").df()
    if util.empty:
        return util, pd.DataFrame()
    codes = con.execute(f"select * from {ICD_UTILITY_PER_CODE} where run_id = ? order by arm, code",
                        [util["run_id"].iloc[0]]).df()
    return util, codes


def icd_utility_section(plt, util: pd.DataFrame, codes: pd.DataFrame, out: Path) -> list[str]:
    """Real- vs synthetic-trained ICD coder: the metrics table and per-code F1 against train frequency."""
    if util.empty:
        return []
    parts = [f"<h2>ICD-coding utility of synthetic notes &middot; dataset "
             f"{html.escape(str(util['dataset'].iloc[0]))}</h2><p>TF-IDF + one-vs-rest logistic regression trained "
             "on real notes, on synthetic notes of the same train admissions, or on every real train note; tested "
             f"on {int(util['n_test_notes'].iloc[0])} real notes of test patients, {int(util['n_codes'].iloc[0])} "
             "codes.</p>",
             _table(util, ["metric", "real_value", "synthetic_value", "real_all_value", "synthetic_minus_real",
                           "n_synthetic_train_notes", "n_real_train_notes"])]
    scored = codes[codes["f1"].notna()]
    if not scored.empty:
        fig, ax = plt.subplots(figsize=(7, 4))
        for arm, marker in (("real", "o"), ("synthetic", "x"), ("real_all", "^")):
            a = scored[scored["arm"] == arm]
            # frequency on the x axis is the code's count among ALL real train notes (the label space's basis)
            freq = a["code"].map(scored[scored["arm"] == "real_all"].set_index("code")["train_notes_with_code"])
            ax.scatter(freq, a["f1"].astype(float), marker=marker, label=arm, alpha=0.7)
        ax.set_xscale("log")
        ax.set_xlabel("real train notes with the code")
        ax.set_ylabel("F1 on real test notes")
        ax.set_title("per-code F1 vs code frequency", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "icd_utility_per_code.png", dpi=100)
        plt.close(fig)
        parts.append("<img src='icd_utility_per_code.png' alt='per-code F1 vs frequency'>")
    return parts


def load(con, spec: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    from ehrforge import warehouse

    warehouse.require_tables(con, [LEADERBOARD, COMPARISON],
                             hint="run `make evaluate` (it builds the results marts), or `make build`")
    board = con.execute(f"select * from {LEADERBOARD}").df()
    if spec:
        board = board[board["spec_name"] == spec]
    if board.empty:
        raise EhrforgeError(f"{LEADERBOARD} has no rows{' for spec ' + repr(spec) if spec else ''}: run "
                            "`make evaluate CONFIG=evaluation/specs/<name>.yaml` first")
    # per spec: the latest version, and within it the latest data version
    latest = (board.sort_values("evaluated_at").groupby("spec_name").tail(1)[["spec_name", "spec_version",
                                                                               "data_version"]])
    board = board.merge(latest, on=["spec_name", "spec_version", "data_version"])
    cmp = con.execute(f"select * from {COMPARISON}").df().merge(latest, on=["spec_name", "spec_version",
                                                                             "data_version"])
    return board, cmp


def load_clinical(con, board: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Calibration and subgroup rows of the runs on the board (empty frames on a warehouse built before them)."""
    from ehrforge import warehouse

    runs = list(board["run_id"].unique())
    out = []
    for table in (CALIBRATION, SUBGROUPS):
        if warehouse.table_exists(con, table):
            out.append(con.execute(f"select * from {table} where run_id in (select unnest(?::varchar[]))",
                                   [runs]).df())
        else:
            out.append(pd.DataFrame(columns=["spec_name", "run_id"]))
    return out[0], out[1]


def headline(metrics: list[str]) -> str:
    return next((m for m in HEADLINE if m in metrics), sorted(metrics)[0])


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


def _bars(ax, df: pd.DataFrame, group: str, series: str, title: str) -> None:
    import numpy as np

    groups = list(dict.fromkeys(df[group]))
    names = sorted(df[series].unique())
    width = 0.8 / max(1, len(names))
    x = np.arange(len(groups))
    for i, name in enumerate(names):
        sub = df[df[series] == name].set_index(group).reindex(groups)
        vals = sub["value"].astype(float).to_numpy()
        lo = (vals - sub["ci_low"].astype(float).to_numpy())
        hi = (sub["ci_high"].astype(float).to_numpy() - vals)
        err = np.nan_to_num(np.vstack([lo, hi]), nan=0.0).clip(min=0)
        ax.bar(x + i * width - 0.4 + width / 2, np.nan_to_num(vals), width, yerr=err, capsize=3, label=name)
    ax.set_xticks(x, groups, rotation=30, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, max(1.0, float(df["ci_high"].max() or 0) if df["ci_high"].notna().any() else 1.0))
    ax.legend(fontsize=8)


def _table(df: pd.DataFrame, cols: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "" if v != v else f"{v:.3f}"
        return html.escape("" if v is None or v is pd.NA else str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = "".join("<tr>" + "".join(f"<td>{fmt(r[c])}</td>" for c in cols) + "</tr>" for _, r in df.iterrows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _reliability(plt, cb: pd.DataFrame, spec: str, out: Path) -> str:
    """One panel per yes/no task: observed rate against mean P("yes") per bin, one line per model."""
    tasks = sorted(cb["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        ax.plot([0, 1], [0, 1], color="gray", lw=0.8, ls="--")
        for model, g in cb[cb["task"] == task].groupby("model_name"):
            g = g.sort_values("bin_index")
            ax.plot(g["mean_predicted"], g["observed_rate"], marker="o", label=f"{model} (ECE {g['ece'].iloc[0]:.2f})"
                    if pd.notna(g["ece"].iloc[0]) else model)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel('mean P("yes")', fontsize=8)
        ax.set_ylabel("observed rate of yes", fontsize=8)
        ax.set_title(task, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    name = f"calibration_{_slug(spec)}.png"
    fig.savefig(out / name, dpi=100)
    plt.close(fig)
    return name


def _clinical_sections(plt, spec: str, sb: pd.DataFrame, calib: pd.DataFrame, sub: pd.DataFrame, out: Path) -> list[str]:
    parts = []
    cb = calib[calib["run_id"].isin(sb["run_id"])] if not calib.empty else calib
    if not cb.empty:
        parts.append("<h3>calibration</h3><p>Reliability diagram (10 equal-width bins of P(\"yes\"); the diagonal is "
                     "perfect calibration), Brier score and expected calibration error (lower is better) with "
                     "bootstrap 95% CIs.</p>")
        parts.append(f"<img src='{_reliability(plt, cb, spec, out)}' alt='reliability diagram'>")
        figs = cb.drop_duplicates(["run_id", "task"]).sort_values(["task", "model_name"])
        parts.append(_table(figs, ["task", "model_name", "n_task_items", "brier", "brier_ci_low", "brier_ci_high",
                                   "ece", "ece_ci_low", "ece_ci_high"]))
    sg = sub[sub["run_id"].isin(sb["run_id"])] if not sub.empty else sub
    if not sg.empty:
        heads = sb[["run_id", "task", "metric"]]
        flagged = sg[sg["is_largest_gap"].astype(bool) & (sg["is_worst_subgroup"].astype(bool)
                                                          | sg["is_best_subgroup"].astype(bool))]
        flagged = flagged.merge(heads, on=["run_id", "task", "metric"])
        if not flagged.empty:
            # attributes tied for the largest gap (e.g. two that split the items the same way): the first one shown
            key = ["run_id", "task", "metric", "attribute"]
            worst = flagged[flagged["is_worst_subgroup"].astype(bool)]
            best = flagged[flagged["is_best_subgroup"].astype(bool)][key + ["subgroup", "value", "n_items"]]
            rows = worst.merge(best, on=key, suffixes=("", "_best"))
            rows = rows.rename(columns={"subgroup": "worst_subgroup", "value": "worst_value", "n_items": "worst_n",
                                        "subgroup_best": "best_subgroup", "value_best": "best_value",
                                        "n_items_best": "best_n"})
            rows = (rows.sort_values(key + ["worst_subgroup", "best_subgroup"])
                    .drop_duplicates(["run_id", "task", "metric"]).sort_values(["task", "metric", "model_name"]))
            parts.append("<h3>subgroups: the largest gap</h3><p>Per model, task and metric, the attribute (sex, age "
                         "band, race, insurance of the admission) whose best and worst subgroup differ most, with "
                         "bootstrap 95% CIs; <code>is_gap_ci_disjoint</code>: the two intervals do not overlap. "
                         "Every subgroup: <code>results.results_subgroups</code>.</p>")
            parts.append(_table(rows, ["task", "metric", "model_name", "attribute", "attribute_gap", "worst_subgroup",
                                       "worst_value", "worst_n", "best_subgroup", "best_value", "best_n",
                                       "is_gap_ci_disjoint"]))
    cons = sb[sb["metric"].isin(CONSISTENCY_METRICS)]
    if not cons.empty:
        wide = cons.pivot_table(index=["task", "model_name"], columns="metric", values="value").reset_index()
        parts.append("<h3>consistency of sampled answers</h3><p>k seeded samples per item: pass@k (at least one of "
                     "k right) and pass^k (all k right); a reliable model has pass^k close to pass@k.</p>")
        parts.append(_table(wide, ["task", "model_name", *[m for m in CONSISTENCY_METRICS if m in wide.columns]]))
    return parts


def render(board: pd.DataFrame, cmp: pd.DataFrame, out: Path, calib: pd.DataFrame | None = None,
           sub: pd.DataFrame | None = None, utility: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>ehrforge evaluation report</title><style>"
             "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:12px;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}"
             "img{max-width:100%}</style></head><body><h1>ehrforge evaluation report</h1>"
             "<p>From <code>results.results_leaderboard</code> and <code>results.results_finetune_vs_base</code>. "
             "Whiskers: percentile bootstrap 95% CIs over items.</p>"]
    for spec, sb in board.groupby("spec_name"):
        ver, dv = sb["spec_version"].iloc[0], sb["data_version"].iloc[0]
        parts.append(f"<h2>spec {html.escape(spec)} v{ver} &middot; dataset {html.escape(str(sb['dataset'].iloc[0]))}"
                     f" ({html.escape(str(sb['split'].iloc[0]))}, data version {html.escape(str(dv))})</h2>")
        scored = sb[sb["value"].notna()]
        heads = (scored if not scored.empty else sb).groupby("task")["metric"].apply(
            lambda m: headline(list(m))).rename("hm").reset_index()
        top = sb.merge(heads, left_on=["task", "metric"], right_on=["task", "hm"])
        top = top.assign(label=top["task"] + "\n" + top["metric"])
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * top["task"].nunique()), 4))
        _bars(ax, top, "label", "model_name", f"{spec} v{ver}: headline metric per task")
        fig.tight_layout()
        name = f"leaderboard_{_slug(spec)}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        parts.append(f"<img src='{name}' alt='leaderboard'>")
        parts.append(_table(top.sort_values(["task", "rank_in_task"]),
                            ["task", "metric", "rank_in_task", "model_name", "model_kind", "value", "ci_low",
                             "ci_high", "n_items"]))
        for task, tb in sb.groupby("task"):
            fig, ax = plt.subplots(figsize=(max(5, 0.9 * tb["metric"].nunique() + 2), 3.4))
            _bars(ax, tb, "metric", "model_name", f"{task}")
            fig.tight_layout()
            name = f"task_{_slug(spec)}_{_slug(task)}.png"
            fig.savefig(out / name, dpi=100)
            plt.close(fig)
            parts.append(f"<h3>{html.escape(task)}</h3><img src='{name}' alt='{html.escape(task)}'>")
        cb = cmp[cmp["spec_name"] == spec]
        if not cb.empty:
            parts.append("<h3>fine-tune vs base</h3>")
            cb = cb.sort_values(["finetune_model", "task", "metric"])
            fig, ax = plt.subplots(figsize=(8, max(3, 0.22 * len(cb))))
            labels = cb["finetune_model"] + " | " + cb["task"] + " | " + cb["metric"]
            colors = ["tab:gray" if pd.isna(v) or d == 0 else ("tab:green" if bool(v) else "tab:red")
                      for v, d in zip(cb["is_improved"], cb["delta"].fillna(0))]
            ax.barh(labels, cb["delta"].astype(float).fillna(0.0), color=colors)
            ax.axvline(0, color="black", lw=0.8)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_title("fine-tune minus base (green: better in the metric's direction)", fontsize=10)
            fig.tight_layout()
            name = f"finetune_vs_base_{_slug(spec)}.png"
            fig.savefig(out / name, dpi=100)
            plt.close(fig)
            parts.append(f"<img src='{name}' alt='fine-tune vs base'>")
            parts.append(_table(cb, ["finetune_model", "base_model", "task", "metric", "finetune_value", "base_value",
                                     "delta", "is_improved", "is_ci_disjoint", "n_paired", "n_finetune_higher",
                                     "n_base_higher"]))
        parts += _clinical_sections(plt, spec, sb, pd.DataFrame() if calib is None else calib,
                                    pd.DataFrame() if sub is None else sub, out)
    if utility is not None:
        parts += icd_utility_section(plt, utility[0], utility[1], out)
    parts.append("</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts))
    return index


def main(argv: list[str] | None = None) -> None:
    from ehrforge import warehouse
    from ehrforge.paths import REPO_ROOT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", help="only this spec (default: every spec, latest version)")
    parser.add_argument("--out", default=str(REPO_ROOT / "reports"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        with warehouse.session(read_only=True, wait_s=30) as con:
            board, cmp = load(con, args.spec)
            calib, sub = load_clinical(con, board)
            utility = load_icd_utility(con)
        index = render(board, cmp, Path(args.out), calib, sub, utility)
    except EhrforgeError as exc:
        sys.exit(f"error: {exc}")
    n_png = len(list(Path(args.out).glob("*.png")))
    print(f"report: {index} ({n_png} plots, {board['run_id'].nunique()} runs, {len(board)} leaderboard rows)")


if __name__ == "__main__":
    main()
