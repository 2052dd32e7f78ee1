"""Metric registry. A metric is one function in one file of this package, registered with

    @register_metric("rouge_l", higher_is_better=True, aggregation="mean", answer_types=("text",))
    def rouge_l(items: list[MetricInput], **params) -> list[float | None]: ...

It returns one value per item (None = not scorable, e.g. no number in the prediction). `aggregation` names a
registered aggregation (evaluation.aggregate) that turns item values into the task figure: "mean", or "auroc" /
"auprc" for ranking metrics, whose item value is the model's P("yes") and whose label is the gold answer (both
are kept per item in `evaluation.scores`).

Judge metrics are registered the same way with `kind="judge"` and no item function: the judge (evaluation.judges)
produces their item values, and the registry gives them their direction and aggregation like any other metric.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ehrforge.errors import ConfigError
from evaluation.aggregate import AGGREGATIONS

KINDS = ("item", "judge", "consistency")  # consistency: values from evaluation.consistency


@dataclass(frozen=True)
class MetricInput:
    """What a metric sees for one item."""

    prediction: str
    reference: str
    answer_type: str = "text"
    p_yes: float | None = None      # P("yes") for yes/no items (choice scoring / logprobs)
    context: str = ""               # the record the model was given (privacy metrics compare against it)
    reasoning: str | None = None    # the output's thinking section / lines before its `Answer:` line (stripped
                                    # from `prediction` before scoring: ehrforge.answers.parse_response)


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[..., list]
    higher_is_better: bool
    aggregation: str
    answer_types: tuple[str, ...]
    description: str = ""
    defaults: dict = field(default_factory=dict)
    kind: str = "item"

    def score(self, items: Sequence[MetricInput], **params) -> list[float | None]:
        if self.fn is None:
            raise RuntimeError(f"metric {self.name} is a {self.kind} metric: its values come from the {self.kind}")
        values = self.fn(list(items), **{**self.defaults, **params})
        if len(values) != len(items):
            raise RuntimeError(f"metric {self.name} returned {len(values)} values for {len(items)} items")
        out = []
        for v in values:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                out.append(None)
            else:
                out.append(float(v))
        return out


METRICS: dict[str, Metric] = {}


def register_metric(
    name: str,
    *,
    higher_is_better: bool,
    aggregation: str = "mean",
    answer_types: tuple[str, ...] = ("text",),
    kind: str = "item",
    description: str = "",
    **defaults,
):
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation {aggregation!r} not registered ({', '.join(sorted(AGGREGATIONS))})")
    if kind not in KINDS:
        raise ValueError(f"metric kind {kind!r} not in {KINDS}")

    def wrap(fn):
        if name in METRICS and METRICS[name].fn is not fn:
            raise ValueError(f"metric {name!r} registered twice")
        doc = description or ((fn.__doc__ or "").strip().splitlines() or [""])[0] if fn is not None else description
        METRICS[name] = Metric(name, fn, higher_is_better, aggregation, tuple(answer_types), doc, dict(defaults), kind)
        return fn

    return wrap


def register_judge_metric(name: str, *, higher_is_better: bool, description: str, aggregation: str = "mean") -> None:
    """A metric whose item values the judge produces (no item function)."""
    register_metric(name, higher_is_better=higher_is_better, aggregation=aggregation, answer_types=(),
                    kind="judge", description=description)(None)


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def get_metric(name: str) -> Metric:
    _load_all()
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; registered: {', '.join(sorted(METRICS))}")
    return METRICS[name]


def all_metrics() -> dict[str, Metric]:
    _load_all()
    return dict(METRICS)


def default_metrics(answer_type: str) -> list[str]:
    """Item metrics that apply to an answer type by default (a spec can override per task)."""
    _load_all()
    return [m.name for m in METRICS.values() if m.kind == "item" and answer_type in m.answer_types]


def judge_metrics() -> list[Metric]:
    _load_all()
    return [m for m in METRICS.values() if m.kind == "judge"]
