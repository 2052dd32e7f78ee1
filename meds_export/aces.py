"""The outcome tasks as ACES task configs (es-aces), run over a MEDS export and compared with marts.fct_outcomes.

    python -m meds_export.cli aces [--export DIR] [--out DIR] [--task T ...]     # = make aces-labels

One YAML per task in meds_export/aces/ (the configs a MEDS-DEV user would run with `aces-cli`); `TASKS` below says
which file is which task and whether the config's label is the complement of ours (an ACES label counts a
predicate in a window and cannot be negated: "length of stay over 3 days" is written as "discharged or died by day
3"). For every data shard of the export, ACES builds its predicates and runs the query; the labels are written in
MEDS's label schema (subject_id, prediction_time, boolean_value), one folder per task, atomically, with
`comparison.json`: per task, how many of our labels ACES reproduces (same subject, prediction time and value), and
every row found by one side only or labelled differently. docs/meds.md says where the two definitions differ.

The configs fix the time constants of dbt_project.yml's vars (prediction_hours_after_admit 24,
icu_prediction_hours_after_intime 24, readmission_continuation_hours 6, readmission_days 30); a build with other
values needs the configs edited to match.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ehrforge.errors import InputDataError

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).with_name("aces")


@dataclass(frozen=True)
class AcesTask:
    config: str            # file in meds_export/aces/
    negate: bool = False   # our label = NOT the config's label


# One entry per marts.fct_outcomes task.
TASKS: dict[str, AcesTask] = {
    "in_hospital_mortality": AcesTask("in_hospital_mortality.yaml"),
    "los_gt_3d": AcesTask("los_gt_3d.yaml", negate=True),
    "los_gt_7d": AcesTask("los_gt_7d.yaml", negate=True),
    "readmission_30d": AcesTask("readmission_30d.yaml"),
    "icu_mortality": AcesTask("icu_mortality.yaml"),
}


@dataclass
class TaskComparison:
    task: str
    n_ours: int                 # marts.fct_outcomes rows with a label
    n_aces: int                 # ACES rows
    n_matched: int              # same subject and prediction time
    n_equal: int                # ... and the same label
    only_ours: list[dict] = field(default_factory=list)
    only_aces: list[dict] = field(default_factory=list)
    disagree: list[dict] = field(default_factory=list)

    @property
    def reproduced(self) -> bool:
        return self.n_equal == self.n_ours == self.n_aces

    @property
    def differences(self) -> list[dict]:
        return self.only_ours + self.only_aces + self.disagree

    @property
    def unexplained(self) -> list[dict]:
        return [r for r in self.differences if r["reason"] == "unexplained"]


def _shards(export_dir: Path) -> list[Path]:
    from ehrforge.atomic import is_complete

    if not export_dir.is_dir() or not is_complete(export_dir):
        raise InputDataError(f"{export_dir} is not a complete MEDS export (missing, or an unfinished one): run "
                             "`make export-meds` first, or pass --export with the folder it wrote.")
    shards = sorted((export_dir / "data").glob("*/*.parquet"))
    if not shards:
        raise InputDataError(f"{export_dir}/data holds no shard (data/<split>/<n>.parquet): re-run `make export-meds`.")
    return shards


def load_config(task: str):
    from aces.config import TaskExtractorConfig

    if task not in TASKS:
        raise InputDataError(f"no ACES config for task {task!r}; known: {sorted(TASKS)}. Add a YAML to "
                             f"meds_export/aces/ and an entry to meds_export.aces.TASKS.")
    return TaskExtractorConfig.load(CONFIG_DIR / TASKS[task].config)


def extract_labels(export_dir: Path, task: str):
    """ACES over every data shard of the export: a pyarrow table in MEDS's label schema, our label's sense."""
    import polars as pl
    from aces.predicates import get_predicates_df
    from aces.query import query
    from omegaconf import DictConfig

    parts = []
    for shard in _shards(export_dir):
        cfg = load_config(task)  # fresh per shard: a query leaves state in the config's window tree
        preds = get_predicates_df(cfg, DictConfig({"path": str(shard), "standard": "meds"}))
        res = query(cfg, preds)
        if res.is_empty():
            continue
        label = pl.col("label") > 0
        parts.append(res.select(pl.col("subject_id").cast(pl.Int64),
                                pl.col("index_timestamp").alias("prediction_time"),
                                (~label if TASKS[task].negate else label).alias("boolean_value")))
    frame = (pl.concat(parts) if parts else pl.DataFrame(
        schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"), "boolean_value": pl.Boolean}))
    return frame.sort("subject_id", "prediction_time").to_arrow()


# Why a row differs, where the warehouse can tell: MIMIC dates some deaths' discharge at midnight of the day of
# death, before deathtime. Our rule counts the admission as an in-hospital death (deathtime is set); an event
# stream sees the discharge first, so ACES's target window closes before the death (and the discharge is
# eligible for readmission).
REASONS_SQL = """
    case when a.deathtime > a.dischtime then 'death_after_discharge' else 'unexplained' end"""


def compare(con, task: str, labels) -> TaskComparison:
    """Our labels (marts.fct_outcomes) against ACES's, matched on subject and prediction time; each row found by one
    side only, or labelled differently, gets a reason from its admission (REASONS_SQL)."""
    con.register("_aces_labels", labels)
    try:
        rows = con.execute(f"""
            with ours as (select subject_id, hadm_id, prediction_time, label, outcome_id from marts.fct_outcomes
                          where task = ? and label is not null),
            joined as (
                select o.subject_id as ours_sid, a.subject_id as aces_sid,
                       coalesce(o.subject_id, a.subject_id) as subject_id,
                       coalesce(o.prediction_time, a.prediction_time) as prediction_time,
                       o.label, a.boolean_value, o.outcome_id, o.hadm_id
                from ours o full join _aces_labels a
                  on a.subject_id = o.subject_id and a.prediction_time = o.prediction_time)
            select j.ours_sid, j.aces_sid, j.prediction_time, j.label, j.boolean_value, j.outcome_id,
                   a.hadm_id,
                   case when j.ours_sid is not null and j.aces_sid is not null and j.label = j.boolean_value
                        then null else {REASONS_SQL} end as reason
            from joined j
            -- the admission of a row ACES found alone: the one it was triggered by (discharge for readmission,
            -- admission or ICU admission + the prediction hours otherwise)
            left join marts.dim_admissions a on a.hadm_id = coalesce(j.hadm_id, (
                select d.hadm_id from marts.dim_admissions d where d.subject_id = j.subject_id
                  and j.prediction_time between d.admittime and d.dischtime + interval 1 day
                order by d.admittime desc limit 1))
            order by 3""", [task]).fetchall()
    finally:
        con.unregister("_aces_labels")
    out = TaskComparison(task, n_ours=sum(r[0] is not None for r in rows), n_aces=sum(r[1] is not None for r in rows),
                         n_matched=0, n_equal=0)
    for ours_sid, aces_sid, t, ours, theirs, outcome_id, hadm_id, reason in rows:
        row = {"subject_id": ours_sid or aces_sid, "hadm_id": hadm_id, "prediction_time": str(t), "ours": ours,
               "aces": theirs, "outcome_id": outcome_id, "reason": reason}
        if ours_sid is None:
            out.only_aces.append(row)
        elif aces_sid is None:
            out.only_ours.append(row)
        else:
            out.n_matched += 1
            if bool(ours) == bool(theirs):
                out.n_equal += 1
            else:
                out.disagree.append(row)
    return out


def run(con, export_dir: Path, out: Path, tasks: list[str] | None = None) -> list[TaskComparison]:
    """Write ACES labels per task (MEDS label schema) and comparison.json into `out`, atomically."""
    import meds
    import pyarrow.parquet as pq

    from ehrforge import warehouse
    from ehrforge.atomic import atomic_dir
    from meds_export.export import _align

    warehouse.require_tables(con, ["marts.fct_outcomes"], hint="build the warehouse first: `make build`")
    tasks = tasks or [t for (t,) in con.execute("select distinct task from marts.fct_outcomes order by 1").fetchall()]
    for t in tasks:
        load_config(t)  # every name is known before anything runs
    results = []
    with atomic_dir(out, meta={"export": str(export_dir), "etl": "ehrforge.meds_export.aces"}) as tmp:
        for task in tasks:
            labels = _align(meds.LabelSchema, extract_labels(export_dir, task), f"ACES labels of {task}")
            rel = tmp / task / "0.parquet"
            rel.parent.mkdir(parents=True)
            pq.write_table(labels, rel)
            cmp = compare(con, task, labels)
            log.info("ACES %s: %d labels, %d of our %d reproduced", task, cmp.n_aces, cmp.n_equal, cmp.n_ours)
            results.append(cmp)
        (tmp / "comparison.json").write_text(json.dumps(
            [asdict(c) | {"reproduced": c.reproduced, "n_unexplained": len(c.unexplained)} for c in results], indent=2, default=str) + "\n")
    return results
