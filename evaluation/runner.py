"""The evaluation pipeline: items -> generation (LLM client, cached) -> metrics -> judge -> bootstrap -> tables.

    from evaluation.runner import evaluate
    summaries = evaluate(load_spec("evaluation/specs/demo.yaml"))

One eval run per (spec, model): run_id = eval-<hash of the spec without the other models, the model's resolved
paths and weight fingerprint, and the data version>, so re-running the same spec on the same data and weights
replaces that run's rows (and every LLM call is answered from llm.calls), while a retrained adapter, a new data
version or a bumped spec version makes a new run next to the old one.
Write order: predictions, scores, task_metrics, calibration_bins, subgroup_metrics, samples, then eval_runs; the results marts read eval_runs first, so a run
that died before its last write is invisible there until it is re-run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import pandas as pd

from ehrforge import tables, warehouse
from ehrforge.answers import parse_response
from ehrforge.config import config_hash
from evaluation.tables import (CALIBRATION_BINS, COMPARISONS, EVAL_RUNS, EVALUATION_TABLES, PREDICTIONS, SAMPLES, SCORES,
                               SUBGROUP_METRICS, TASK_METRICS)
from evaluation.aggregate import aggregate_with_ci
from evaluation.data import load_items
from evaluation.metrics import MetricInput, get_metric, judge_metrics
from evaluation.metrics._text import yes_no
from evaluation.models import ResolvedModel, resolve_model
from evaluation.spec import EvalSpec

log = logging.getLogger(__name__)



@dataclass
class ModelSummary:
    model_name: str
    run_id: str
    status: str
    n_items: int
    n_llm_calls: int
    n_cached: int
    n_failed: int
    wall_s: float
    items_per_s: float
    task_metrics: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    judge: dict | None = None  # judge_reliability(): verdicts parsed, preference kept across the order swap


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def run_config(spec: EvalSpec, model: ResolvedModel, data_version: str) -> dict:
    from ehrforge.llm.backends import model_identity

    body = spec.model_dump(mode="json", exclude={"models", "build_results"})
    body["model"] = {
        "name": model.name, "kind": model.kind, "model_path": model.model_path, "adapter_path": model.adapter_path,
        "base_url": model.base_url, "identity": model_identity(model.llm_config),
        "llm": model.llm_config.model_dump(mode="json"),
    }
    from ehrforge.llemr import is_artifact

    if is_artifact(model.adapter_path):  # the text form's runs keep their ids
        body["model"]["form"] = "events"
    body["data_version"] = data_version
    return body


def generate(items: pd.DataFrame, spec: EvalSpec, model: ResolvedModel, con, run, progress: bool):
    """-> (one Response per item, in item order; RunStats for generation and choice scoring)."""
    from ehrforge.llm import Request, RunStats, run_batch, score_choices

    cfg = model.llm_config
    is_scored = (items["answer_type"] == "yes_no") & (spec.generation.yes_no == "score")
    responses: dict[str, object] = {}
    stats = [RunStats(), RunStats()]
    gen = items[~is_scored]
    if len(gen):
        reqs = [Request(id=r.instruction_id, messages=r.messages) for r in gen.itertuples()]
        for resp in run_batch(reqs, cfg, run=run, con=con, progress=progress, stats=stats[0]):
            responses[resp.request_id] = resp
    sc = items[is_scored]
    if len(sc):
        reqs = [Request(id=r.instruction_id, messages=r.messages) for r in sc.itertuples()]
        for resp in score_choices(reqs, spec.generation.choices, cfg, run=run, con=con, progress=progress,
                                  stats=stats[1]):
            responses[resp.request_id] = resp
    return [responses[i] for i in items["instruction_id"]], stats


def p_yes_of(resp, choices: list[str]) -> float | None:
    probs = resp.choice_probs
    if probs:
        return probs.get(choices[0])
    return None


def score_items(items: pd.DataFrame, preds: list[str | None], p_yes: list[float | None], spec: EvalSpec) -> list[dict]:
    """Per-item metric rows (value None where the metric cannot score the item or generation failed)."""
    rows = []
    # A reasoning model's thinking section (and the lines before its final `Answer:` line) is stripped before
    # scoring; its length is reported as the metric reasoning_words when any output of the run has one.
    parsed = [parse_response(p) if isinstance(p, str) else (None, None) for p in preds]
    has_reasoning = any(r for r, _ in parsed)
    items = items.assign(x_pred=[a for _, a in parsed], x_reason=[r for r, _ in parsed], x_p=p_yes)
    # the reference of a reasoning row is its answer after the thinking section
    items["answer"] = [parse_response(str(a))[1] for a in items["answer"]]
    for (task, answer_type), grp in items.groupby(["task", "answer_type"], sort=True):
        ok = grp["x_pred"].notna().tolist()
        inputs = [MetricInput(prediction=r.x_pred if isinstance(r.x_pred, str) else "", reference=str(r.answer),
                              answer_type=answer_type,
                              p_yes=None if pd.isna(r.x_p) else float(r.x_p), context=r.context or "",
                              reasoning=r.x_reason if isinstance(r.x_reason, str) else None)
                  for r in grp.itertuples()]
        labels = [yes_no(str(a)) if answer_type == "yes_no" else None for a in grp["answer"]]
        names = spec.metrics_for(task, answer_type)
        for name in names + (["reasoning_words"] if has_reasoning and "reasoning_words" not in names else []):
            metric = get_metric(name)
            values = metric.score(inputs, **spec.metric_params.get(name, {}))
            for iid, v, lab, good in zip(grp["instruction_id"], values, labels, ok):
                rows.append({"instruction_id": iid, "task": task, "metric": name, "value": v if good else None,
                             "label": None if lab is None else float(lab), "details": None})
    return rows


def judge_rows(items: pd.DataFrame, preds: list[str | None], spec: EvalSpec, con, run, progress: bool) -> list[dict]:
    from evaluation.judges import JudgeItem, get_rubric, judge_items

    if not spec.judge.enabled:
        return []
    sel = items.assign(x_pred=preds)
    sel = sel[sel["answer_type"].isin(spec.judge.answer_types) & sel["x_pred"].notna()]
    if spec.judge.max_items:
        sel = sel.head(spec.judge.max_items)
    if sel.empty:
        return []
    jury = [(m.name, resolve_model(con, m, spec.generation.model_copy(
        update={"max_new_tokens": spec.judge.max_new_tokens, "temperature": 0.0})).llm_config)
            for m in spec.judge.jury]
    judged = judge_items(
        [JudgeItem(id=r.instruction_id, question=r.instruction, context=r.context or "", candidate=r.x_pred,
                   reference=str(r.answer)) for r in sel.itertuples()],
        get_rubric(spec.judge.rubric), jury, both_orders=spec.judge.both_orders, max_retries=spec.judge.max_retries,
        max_new_tokens=spec.judge.max_new_tokens, output=spec.judge.output, run=run, con=con,
        progress=progress)
    rows = []
    for r in sel.itertuples():
        res = judged[r.instruction_id]
        for metric in (m.name for m in judge_metrics()):
            rows.append({"instruction_id": r.instruction_id, "task": r.task, "metric": metric, "value": res[metric],
                         "label": None, "details": json.dumps(res["details"], default=str)})
    return rows


def task_metric_rows(score_rows: list[dict], spec: EvalSpec) -> list[dict]:
    by = defaultdict(lambda: ([], []))
    for r in score_rows:
        vals, labs = by[(r["task"], r["metric"])]
        vals.append(r["value"])
        labs.append(r["label"])
    out = []
    for (task, metric), (vals, labs) in sorted(by.items()):
        m = get_metric(metric)
        aggregation, hib = m.aggregation, m.higher_is_better
        value, lo, hi, n = aggregate_with_ci(vals, labs, aggregation, spec.bootstrap.n, spec.bootstrap.seed)
        out.append({"task": task, "metric": metric, "aggregation": aggregation, "higher_is_better": hib,
                    "value": value, "ci_low": lo, "ci_high": hi, "n_items": n, "n_bootstrap": spec.bootstrap.n})
    return out


def calibration_rows(items: pd.DataFrame, p_yes: list[float | None]) -> list[dict]:
    """Reliability-diagram bins (evaluation.calibration) per task, over the yes/no items with a P("yes")."""
    from evaluation.calibration import reliability_bins

    df = items.assign(x_p=p_yes)
    df = df[(df["answer_type"] == "yes_no") & df["x_p"].notna()]
    df = df.assign(x_y=[yes_no(str(a)) for a in df["answer"]])
    df = df[df["x_y"].notna()]
    return [{"task": task, **b} for task, g in df.groupby("task", sort=True)
            for b in reliability_bins(g["x_p"].to_numpy(float), g["x_y"].to_numpy(float))]


def evaluate_model(con, spec: EvalSpec, model: ResolvedModel, items: pd.DataFrame, data_version: str,
                   progress: bool = True) -> ModelSummary:
    config = run_config(spec, model, data_version)
    run = warehouse.start_run(con, job="evaluate", config=config,
                              run_id=f"eval-{config_hash(config)[:12]}")
    with warehouse.failing_run(con, run):  # any error or refusal (PHI guard) marks the run failed, with why
        return _evaluate_model(con, spec, model, items, data_version, progress, config, run)


def _evaluate_model(con, spec, model, items, data_version, progress, config, run) -> ModelSummary:
    started = _now()
    t0 = time.perf_counter()
    log.info("evaluating %s (%s) on %d items: run %s", model.name, model.kind, len(items), run.run_id)
    if model.kind == "baseline":
        from ehrforge.llm import RunStats
        from evaluation.baseline import baseline_responses

        responses, stats = baseline_responses(con, spec.data, items), [RunStats()]
    else:
        responses, stats = generate(items, spec, model, con, run, progress)
    choices = spec.generation.choices
    preds = [r.text if r.ok else None for r in responses]
    p_yes = [p_yes_of(r, choices) if r.ok else None for r in responses]
    scores = score_items(items, preds, p_yes, spec)
    judge = None
    if model.kind != "baseline":
        jrows = judge_rows(items, preds, spec, con, run, progress)
        scores += jrows
        if jrows:
            from evaluation.judges.runner import judge_reliability

            judge = judge_reliability([json.loads(r["details"]) for r in jrows if r["metric"] == "judge_score"])
    samples = []
    if model.kind != "baseline" and spec.consistency.n_samples:
        from evaluation.consistency import sample_and_score

        samples, consistency_rows = sample_and_score(items, spec, model, con, run, progress)
        scores += consistency_rows
    metrics = task_metric_rows(scores, spec)
    calibration = calibration_rows(items, p_yes)
    from evaluation.subgroups import subgroup_rows

    subgroups = subgroup_rows(con, items, scores, spec)
    wall = time.perf_counter() - t0
    # a failed sample leaves its item's pass@k / pass^k empty: the run is incomplete, like a failed generation
    n_failed = sum(not r.ok for r in responses) + sum(s["error"] is not None for s in samples)
    common = {"spec_name": spec.name, "spec_version": spec.version}
    pred_rows = [{
        **common, "instruction_id": it.instruction_id, "task": it.task,
        "task_version": None if pd.isna(it.task_version) else str(it.task_version), "answer_type": it.answer_type,
        "subject_id": None if pd.isna(it.subject_id) else int(it.subject_id), "prompt_hash": it.prompt_hash,
        "cache_key": resp.cache_key, "prediction": pred, "reference": str(it.answer), "p_yes": p,
        "prompt_tokens": resp.prompt_tokens, "completion_tokens": resp.completion_tokens,
        "latency_s": resp.latency_s, "is_cached": resp.cached, "error": resp.error,
    } for it, resp, pred, p in zip(items.itertuples(), responses, preds, p_yes)]
    n_calls = sum(s.n_calls for s in stats)
    n_cached = sum(s.n_cached for s in stats)
    status = "succeeded" if n_failed == 0 else "incomplete"
    run_row = {
        **common, "spec_fingerprint": spec.fingerprint(), "model_name": model.name, "model_kind": model.kind, "model_path": model.model_path,
        "adapter_path": model.adapter_path, "base_model_path": model.base_model_path,
        "training_run_id": model.training_run_id, "base_url": model.base_url, "backend": model.backend,
        "model_identity": config["model"]["identity"], "dataset": spec.data.dataset, "split": spec.data.split,
        "data_version": data_version, "n_items": len(items), "n_llm_calls": n_calls, "n_cached": n_cached,
        "n_failed": n_failed, "started_at": started, "finished_at": _now(), "wall_s": wall,
        "items_per_s": len(items) / wall if wall else None, "status": status,
    }
    warehouse.write_table(con, PREDICTIONS, tables.frame(PREDICTIONS, pred_rows), run)
    warehouse.write_table(con, SCORES, tables.frame(SCORES, [{**common, **r} for r in scores]), run)
    warehouse.write_table(con, TASK_METRICS,
                          tables.frame(TASK_METRICS, [{**common, **r} for r in metrics]), run)
    for table, rows in ((CALIBRATION_BINS, calibration), (SUBGROUP_METRICS, subgroups),
                        (SAMPLES, samples)):
        warehouse.write_table(con, table, tables.frame(table, [{**common, **r} for r in rows]), run)
    warehouse.write_table(con, EVAL_RUNS, tables.frame(EVAL_RUNS, [run_row]), run)
    warehouse.finish_run(con, run, status)
    if n_failed:
        log.warning("%s: %d of %d generations failed (first: %s); the run is marked incomplete and left out of "
                    "the results marts. Re-run the same spec: finished calls come from the cache.", model.name,
                    n_failed, len(items), next(r.error for r in responses if not r.ok))
    return ModelSummary(model.name, run.run_id, status, len(items), n_calls, n_cached, n_failed, wall,
                        len(items) / wall if wall else 0.0, pd.DataFrame(metrics), judge)


def evaluate(spec: EvalSpec, progress: bool = True, build_results: bool | None = None) -> list[ModelSummary]:
    """Evaluate every model of the spec, then rebuild the results marts (dbt build --select results)."""
    summaries = []
    with warehouse.session(wait_s=30) as con:
        warehouse.require_finished_build(con)  # the check every job runs before reading mart-derived data
        items, data_version = load_items(con, spec.data)
        for table in EVALUATION_TABLES:
            tables.ensure(con, table)
        check_version(con, spec)
        resolved = [resolve_model(con, m, spec.generation) for m in spec.models]  # all errors before any work
        for model in resolved:
            summaries.append(evaluate_model(con, spec, model, items_for(con, spec, model, items), data_version,
                                            progress))
        write_comparisons(con, spec, [s.run_id for s in summaries])
    if spec.build_results if build_results is None else build_results:
        build_results_marts()
    return summaries


def items_for(con, spec: EvalSpec, model: ResolvedModel, items: pd.DataFrame) -> pd.DataFrame:
    """The items as this model reads them: the text form, or the event form for an LLemr artifact (the same items,
    ids and references; ehrforge.llemr)."""
    from ehrforge.llemr import is_artifact

    if not is_artifact(model.adapter_path):
        return items
    from evaluation.data import event_form_items

    return event_form_items(con, items, spec.data, model.adapter_path)


def check_version(con, spec: EvalSpec) -> None:
    from ehrforge.errors import ConfigError

    other = con.execute(
        "select min(run_id), count(*) from evaluation.eval_runs where spec_name = ? and spec_version = ? "
        "and spec_fingerprint is distinct from ?", [spec.name, spec.version, spec.fingerprint()]).fetchone()
    if other and other[1]:
        raise ConfigError(
            f"spec {spec.name!r} version {spec.version} was already evaluated with different prompt, generation, metric "
            f"or judge settings (e.g. run {other[0]}). Bump `version` in the spec (scores made under different rules "
            "must not be ranked together), or restore the settings of that version.")


def write_comparisons(con, spec: EvalSpec, run_ids: list[str]) -> int:
    """Paired-bootstrap deltas for every fine-tune/base pair that involves a run of this invocation."""
    from evaluation.compare import comparison_rows, pairs_touching

    n = 0
    for ft, base in pairs_touching(con, run_ids):
        rows = comparison_rows(con, ft, base, spec.bootstrap.n, spec.bootstrap.seed)
        ft_run = con.execute("select run_id, created_at, code_version, config_hash, spec_name, spec_version "
                             "from evaluation.eval_runs where run_id = ?", [ft]).fetchone()
        run = warehouse.RunInfo(run_id=ft_run[0], job="evaluate", config_hash=ft_run[3], code_version=ft_run[2],
                                created_at=ft_run[1])
        df = tables.frame(COMPARISONS, [{"spec_name": ft_run[4], "spec_version": ft_run[5], **r} for r in rows])
        con.execute("delete from evaluation.comparisons where finetune_run_id = ? and base_run_id = ?", [ft, base])
        warehouse.write_table(con, COMPARISONS, df, run, replace="none")
        n += len(rows)
    return n


def build_results_marts() -> None:
    from ehrforge.build import run_dbt
    from ehrforge.errors import RunFailedError

    # reads only evaluation.* (no raw files, no MIMIC_ROOT needed), on the warehouse ehrforge.paths names
    if not run_dbt(["build", "--select", "source:evaluation+", "--quiet"]):
        raise RunFailedError("dbt build of the results marts failed (run `cd dbt_project && dbt build --select source:evaluation+` "
                            "to see why); the scores are in evaluation.* but the results marts are stale")
