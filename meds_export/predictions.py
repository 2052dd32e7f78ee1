"""Binary predictions of evaluation runs in meds-evaluation's prediction schema (MEDS label schema + predictions).

    python -m meds_export.cli predictions [--run-id eval-...] [--out DIR]    # = make export-meds-predictions

One file per succeeded eval run and task, `<out>/<run_id>/<task>.parquet`, holding every yes/no item with a
P("yes"): subject_id, prediction_time, boolean_value (the gold label), predicted_boolean_value (P >= 0.5, our
`accuracy` threshold) and predicted_boolean_probability (P("yes")), validated by meds_evaluation.schema.
PredictionSchema. The label and the prediction time come from marts.fct_outcomes: the item's
`lineage.outcome_id` (risk_prediction), else `<task or template_id>:<hadm_id>` when that names an outcome
instance; items that name none have no MEDS prediction time and are left out (counted in the log).
Reads evaluation.eval_runs, evaluation.predictions, synthesis.instructions (the default spec table) and
marts.fct_outcomes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ehrforge import warehouse
from ehrforge.errors import InputDataError

log = logging.getLogger(__name__)

THRESHOLD = 0.5

# one row per (run, item): the outcome instance it predicts, resolved as the module docstring says
ITEMS_SQL = """
with preds as (
    select p.run_id, p.task, p.instruction_id, p.p_yes, p.subject_id
    from evaluation.predictions p join evaluation.eval_runs r using (run_id)
    where r.status = 'succeeded' and p.answer_type = 'yes_no' and p.p_yes is not null
      and p.run_id in (select unnest(?::varchar[]))
),
items as (
    select distinct on (instruction_id) instruction_id, hadm_id, task, template_id,
           json_extract_string(lineage, '$.outcome_id') as outcome_id
    from synthesis.instructions
)
select p.run_id, p.task, p.instruction_id, p.p_yes, o.subject_id, o.prediction_time, o.label, p.subject_id as item_subject_id
from preds p
join items i using (instruction_id)
left join marts.fct_outcomes o
  on o.outcome_id = coalesce(i.outcome_id, case when i.template_id || ':' || i.hadm_id in
                                                     (select outcome_id from marts.fct_outcomes)
                                                then i.template_id || ':' || i.hadm_id
                                                else i.task || ':' || i.hadm_id end)
order by p.run_id, p.task, o.subject_id, o.prediction_time, p.instruction_id
"""


def prediction_frames(con, run_ids: list[str] | None = None) -> dict[tuple[str, str], "object"]:
    """{(run_id, task): polars DataFrame in PredictionSchema} for the runs' yes/no items with an outcome."""
    import polars as pl

    warehouse.require_tables(con, ["evaluation.eval_runs", "evaluation.predictions", "synthesis.instructions",
                                   "marts.fct_outcomes"], hint="run `make evaluate` first")
    if run_ids is None:
        run_ids = [r for (r,) in con.execute("select run_id from evaluation.eval_runs where status = 'succeeded' "
                                             "order by run_id").fetchall()]
    df = pl.from_arrow(con.sql(ITEMS_SQL, params=[run_ids]).to_arrow_table())
    wrong = df.filter(pl.col("subject_id").is_not_null() & (pl.col("subject_id") != pl.col("item_subject_id")))
    if wrong.height:
        r = wrong.row(0, named=True)
        raise InputDataError(
            f"evaluation.predictions item {r['instruction_id']} (subject {r['item_subject_id']}) resolves to an "
            f"outcome of subject {r['subject_id']} in marts.fct_outcomes: the instruction's lineage.outcome_id or "
            "hadm_id is wrong. Rebuild the instruction set (`make synthesize`) from the current marts.")
    missing = df.filter(pl.col("prediction_time").is_null())
    if missing.height:
        log.info("%d yes/no predictions name no marts.fct_outcomes instance (no prediction time): not exported "
                 "(tasks: %s)", missing.height, ", ".join(sorted(set(missing["task"]))))
    df = df.filter(pl.col("prediction_time").is_not_null())
    out = {}
    for (run_id, task), g in df.group_by(["run_id", "task"], maintain_order=True):
        out[(run_id, task)] = g.select(
            pl.col("subject_id").cast(pl.Int64),
            pl.col("prediction_time").cast(pl.Datetime("us")),
            pl.col("label").alias("boolean_value"),
            (pl.col("p_yes") >= THRESHOLD).alias("predicted_boolean_value"),
            pl.col("p_yes").cast(pl.Float32).alias("predicted_boolean_probability"),
        )
    return out


def export_predictions(con, out: str | Path | None = None, run_ids: list[str] | None = None) -> dict[Path, int]:
    """Write one validated parquet file per (run, task); returns {path: rows}. Each file is written whole or not
    at all (temporary sibling, then rename)."""
    import os

    import pyarrow.parquet as pq
    from meds_evaluation.schema import PredictionSchema

    from ehrforge.paths import runs_dir

    out = Path(out) if out else runs_dir() / "meds" / "predictions"
    written = {}
    for (run_id, task), frame in prediction_frames(con, run_ids).items():
        table = PredictionSchema.align(frame.to_arrow())
        PredictionSchema.validate(table)
        path = out / run_id / f"{task}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        written[path] = table.num_rows
    if not written:
        log.warning("no yes/no predictions with a marts.fct_outcomes instance in %s", run_ids or "any succeeded run")
    return written
