"""Risk prediction (EHR-R1): one yes/no question per marts.fct_outcomes instance, context ending at prediction_time.

Labels come from fct_outcomes only; the context shows events with admittime <= event_time < prediction_time, and
the header never shows outcome fields. Sampling per outcome task, deterministic for a seed:
- balanced: equal numbers of positive and negative instances (as many as the minority class allows);
- inverse_frequency: weighted sampling without replacement, weight 1 / frequency of the label
  (Efraimidis-Spirakis keys from a hash, so it is reproducible);
- natural: a uniform sample.
"""

from __future__ import annotations

import json
import math
from typing import Literal

import pandas as pd
from pydantic import Field

from synthesis.registry import Task, TaskConfig, instruction_id, register_task, stable_hash, take_quota
from synthesis.render import fmt_time

QUESTIONS = {
    "in_hospital_mortality": "will the patient die during this hospital admission?",
    "readmission_30d": "will the patient be readmitted to the hospital within 30 days of this discharge?",
    "los_gt_3d": "will this hospital stay last longer than 3 days from admission?",
    "los_gt_7d": "will this hospital stay last longer than 7 days from admission?",
    "icu_mortality": "will the patient die during the current ICU stay?",
}


class RiskConfig(TaskConfig):
    quota: int = Field(200, ge=0)
    outcomes: list[Literal["in_hospital_mortality", "readmission_30d", "los_gt_3d", "los_gt_7d",
                           "icu_mortality"]] = list(QUESTIONS)
    sampling: Literal["balanced", "inverse_frequency", "natural"] = "balanced"
    quota_per_outcome: int | None = Field(None, ge=1, description="default: quota / number of outcomes")


def _sample(rows: list[dict], n: int, how: str, seed: int) -> list[dict]:
    if how == "natural" or not rows:
        return take_quota(rows, n, seed)
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["answer"], []).append(r)
    if how == "balanced":
        per = min(min(len(v) for v in by_label.values()) if len(by_label) == 2 else 0, n // 2)
        return [r for lab in sorted(by_label) for r in take_quota(by_label[lab], per, seed)]
    # inverse frequency: key = u ** (1 / w), keep the n largest (Efraimidis & Spirakis 2006)
    freq = {lab: len(v) / len(rows) for lab, v in by_label.items()}

    def key(r):
        u = (int(stable_hash(seed, "ef", r["instruction_id"]), 16) + 1) / (16 ** 16 + 2)
        return math.log(u) * freq[r["answer"]]  # log(u ** (1/w)) with w = 1/freq
    return sorted(rows, key=key, reverse=True)[:n]


@register_task("risk_prediction", version="1.0",
               source_marts=["marts.fct_outcomes", "marts.fct_events", "marts.dim_admissions"], config=RiskConfig)
class RiskPrediction(Task):
    def build(self, ctx, cfg: RiskConfig) -> list[dict]:
        from tqdm.auto import tqdm

        con = ctx.con
        with ctx.cohort_view():
            inst = con.execute(
                "select o.* from marts.fct_outcomes o join _synth_cohort c using (hadm_id) "
                "where o.task in (select unnest(?::varchar[])) order by o.outcome_id", [list(cfg.outcomes)]).df()
        per = cfg.quota_per_outcome or max(1, cfg.quota // max(1, len(cfg.outcomes)))
        # sample on ids and labels first, render only the chosen instances
        chosen: list[dict] = []
        for task in cfg.outcomes:
            cands = [{"instruction_id": instruction_id(ctx.cfg.dataset, self.name, self.version, r["outcome_id"]),
                      "answer": "yes" if r["label"] else "no", "_r": r}
                     for r in inst[inst["task"] == task].to_dict("records")]
            chosen += _sample(cands, per, cfg.sampling, ctx.seed)
        rows = []
        for c in tqdm(chosen[: cfg.quota], desc="risk_prediction", disable=not ctx.cfg.progress, unit="row"):
            r = c["_r"]
            adm = ctx.admission(int(r["hadm_id"]))
            start = pd.Timestamp(adm["admittime"]).floor("min")
            end = pd.Timestamp(r["prediction_time"]).floor("min")  # never past the prediction time
            rendered = ctx.render(int(r["hadm_id"]), start, end)
            q = (f"Based on the record up to {fmt_time(end)}, {QUESTIONS[r['task']]} Answer yes or no.")
            lineage = {"source_marts": self.source_marts, "outcome_id": r["outcome_id"], "outcome": r["task"],
                       "hadm_id": int(r["hadm_id"]),
                       "stay_id": None if pd.isna(r["stay_id"]) else int(r["stay_id"]),
                       "prediction_time": str(r["prediction_time"]), "context": rendered.lineage(),
                       "sampling": cfg.sampling}
            rows.append({"instruction_id": c["instruction_id"], "task": self.name, "task_version": self.version,
                         "subject_id": int(r["subject_id"]), "hadm_id": int(r["hadm_id"]), "context": rendered.text,
                         "instruction": q, "answer": c["answer"], "answer_type": "yes_no",
                         "lineage": json.dumps(lineage, sort_keys=True), "template_id": r["task"],
                         "prompt_hash": None, "generator_model": None, "seed": ctx.seed,
                         "_data": stable_hash(ctx.admission_fingerprint(int(r["hadm_id"])), bool(r["label"]),
                                              str(r["prediction_time"]), str(r["outcome_time"]))})
        return rows

    def recompute(self, con, rows: list[dict]) -> list:
        out = []
        for r in rows:
            lin = json.loads(r["lineage"])
            got = con.execute("select label, prediction_time from marts.fct_outcomes where outcome_id = ?",
                              [lin["outcome_id"]]).fetchall()
            if len(got) != 1:
                out.append(None)
                continue
            label, pt = got[0]
            # the context must end at (not after) the prediction time
            if pd.Timestamp(lin["context"]["window_end"]) > pd.Timestamp(pt):
                out.append(None)
                continue
            out.append("yes" if label else "no")
        return out
