"""The judge's metrics: registered like every metric, valued by the judge (evaluation.judges), not per item here."""

from evaluation.metrics import register_judge_metric

register_judge_metric("judge_score", higher_is_better=True,
                      description="the candidate's mean criterion score (1..5 mapped to 0..1), averaged over jurors and answer orders")
register_judge_metric("judge_win_rate", higher_is_better=True,
                      description="1 when the jury prefers the candidate to the reference, 0.5 for a tie, 0 otherwise; averaged")
