"""The evaluation tables' names. Their columns and types are declared once, in
dbt_project/models/results/_evaluation__sources.yml, and created and shaped through ehrforge.tables
(`tables.ensure(con)`, `tables.frame(table, rows)`), like every Python-written table.
"""

EVAL_RUNS, PREDICTIONS, SCORES, TASK_METRICS, COMPARISONS = (
    "evaluation.eval_runs", "evaluation.predictions", "evaluation.scores", "evaluation.task_metrics",
    "evaluation.comparisons")
CALIBRATION_BINS, SUBGROUP_METRICS, SAMPLES = (
    "evaluation.calibration_bins", "evaluation.subgroup_metrics", "evaluation.samples")
EVALUATION_TABLES = (EVAL_RUNS, PREDICTIONS, SCORES, TASK_METRICS, COMPARISONS, CALIBRATION_BINS, SUBGROUP_METRICS,
                     SAMPLES)
