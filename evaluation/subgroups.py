"""Task figures per subgroup (sex, age band, race, insurance of the item's admission) with bootstrap 95% CIs.

    rows = subgroup_rows(con, items, score_rows, spec)   # -> evaluation.subgroup_metrics

An item's subgroup comes from marts.dim_admissions through its hadm_id (gender, age_band, race_group, insurance);
an item without an admission is in subgroup "Unknown". Each (task, metric) is aggregated per subgroup with the
metric's own registered aggregation (so AUROC per subgroup is an AUROC, not a mean of P("yes")) and the spec's
bootstrap. Subgroups under `subgroups.min_items` are written with `is_ranked` false: the results mart
(results_subgroups) leaves them out of the gap, which it computes between the best and the worst ranked subgroup
of each attribute, flagging the attribute with the largest gap.
"""

from __future__ import annotations

from collections import defaultdict

import pandas as pd

from evaluation.aggregate import aggregate_with_ci
from evaluation.metrics import get_metric

# spec attribute -> column of marts.dim_admissions
ATTRIBUTE_COLUMNS = {"sex": "gender", "age_band": "age_band", "race": "race_group", "insurance": "insurance"}
UNKNOWN = "Unknown"


def item_attributes(con, items: pd.DataFrame, attributes: list[str]) -> dict[str, dict[str, str]]:
    """{instruction_id: {attribute: subgroup}} for every item."""
    from ehrforge import warehouse

    out = {iid: {a: UNKNOWN for a in attributes} for iid in items["instruction_id"]}
    if "hadm_id" not in items.columns or not attributes:
        return out
    warehouse.require_tables(con, ["marts.dim_admissions"])
    cols = ", ".join(f"{ATTRIBUTE_COLUMNS[a]} as {a}" for a in attributes)
    hadm = sorted({int(h) for h in items["hadm_id"].dropna()})
    adm = con.execute(f"select hadm_id, {cols} from marts.dim_admissions where hadm_id in (select unnest(?::bigint[]))",
                      [hadm]).df().set_index("hadm_id")
    for iid, h in zip(items["instruction_id"], items["hadm_id"]):
        if pd.notna(h) and int(h) in adm.index:
            row = adm.loc[int(h)]
            out[iid] = {a: UNKNOWN if pd.isna(row[a]) else str(row[a]) for a in attributes}
    return out


def subgroup_rows(con, items: pd.DataFrame, score_rows: list[dict], spec) -> list[dict]:
    cfg = spec.subgroups
    if not cfg.enabled or not score_rows:
        return []
    attrs = item_attributes(con, items, list(cfg.attributes))
    groups: dict[tuple, tuple[list, list]] = defaultdict(lambda: ([], []))
    for r in score_rows:
        for a in cfg.attributes:
            vals, labs = groups[(r["task"], r["metric"], a, attrs[r["instruction_id"]][a])]
            vals.append(r["value"])
            labs.append(r["label"])
    out = []
    for (task, metric, attribute, subgroup), (vals, labs) in sorted(groups.items()):
        m = get_metric(metric)
        value, lo, hi, n = aggregate_with_ci(vals, labs, m.aggregation, spec.bootstrap.n, spec.bootstrap.seed)
        out.append({"task": task, "metric": metric, "attribute": attribute, "subgroup": subgroup,
                    "aggregation": m.aggregation, "higher_is_better": m.higher_is_better, "value": value,
                    "ci_low": lo, "ci_high": hi, "n_items": n, "n_bootstrap": spec.bootstrap.n,
                    "is_ranked": bool(n >= cfg.min_items and value is not None)})
    return out
