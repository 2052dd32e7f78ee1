"""Consistency metrics over k seeded samples per item (values from evaluation.consistency, like judge metrics)."""

from evaluation.metrics import register_metric

register_metric("pass_at_k", higher_is_better=True, aggregation="mean", answer_types=(), kind="consistency",
                description="at least one of k sampled answers is right (unbiased estimate from n samples)")(None)
register_metric("pass_hat_k", higher_is_better=True, aggregation="mean", answer_types=(), kind="consistency",
                description="all k sampled answers are right (pass^k, unbiased estimate from n samples)")(None)
