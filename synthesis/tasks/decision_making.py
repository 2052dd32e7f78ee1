"""Decision making (EHR-R1): given the preceding 24 h of the record, which labs / medications / diagnoses come next.

Anchors are every 24 h after admission (T = admit + k * 24 h) while T + horizon <= discharge; the context shows
[T - history, T), the answer is the set of distinct item labels of the target event type in [T, T + horizon),
as a JSON array sorted alphabetically (answer_type `set`). Diagnoses are coded at discharge: their anchor is the
discharge time, the context is the last `history_hours` before it (diagnosis events excluded) and the answer the
`max_diagnoses` highest-priority codes. With `candidates: true` the instruction lists the true items mixed with
items of the same type drawn from other admissions of the cohort.
"""

from __future__ import annotations

import json
from typing import Literal

import pandas as pd
from pydantic import Field

from synthesis.registry import Task, TaskConfig, instruction_id, register_task, stable_hash, take_quota
from synthesis.render import fmt_time

TARGET_TYPES = {"lab": "lab", "medication": "prescription", "diagnosis": "diagnosis"}
NOUNS = {"lab": "lab tests", "medication": "medications (new prescriptions)", "diagnosis": "diagnoses"}


class DecisionConfig(TaskConfig):
    quota: int = Field(150, ge=0)
    targets: list[Literal["lab", "medication", "diagnosis"]] = ["lab", "medication", "diagnosis"]
    history_hours: int = Field(24, ge=1)
    horizon_hours: int = Field(24, ge=1)
    max_anchors: int = Field(3, ge=1, description="most anchors per admission and target")
    max_answer_items: int = Field(40, ge=1, description="instances with a larger answer set are skipped")
    max_diagnoses: int = Field(5, ge=1)
    candidates: bool = False
    n_candidates: int = Field(30, ge=2)


@register_task("decision_making", version="1.0", source_marts=["marts.fct_events", "marts.dim_admissions"],
               config=DecisionConfig)
class DecisionMaking(Task):
    def build(self, ctx, cfg: DecisionConfig) -> list[dict]:
        from tqdm.auto import tqdm

        targets = self._load_targets(ctx, cfg)
        vocab = {t: sorted(set(df["item_label"].astype(str))) for t, df in targets.items()}
        grouped = {t: {int(h): g for h, g in df.groupby("hadm_id")} for t, df in targets.items()}
        empty = {t: df.iloc[0:0] for t, df in targets.items()}
        specs = []  # (adm, target, anchor, answer list) -- cheap, rendering comes after sampling
        for adm in ctx.admissions.to_dict("records"):
            hadm = int(adm["hadm_id"])
            admit = pd.Timestamp(adm["admittime"]).floor("min")
            disch = pd.Timestamp(adm["dischtime"]).floor("min")
            for target in cfg.targets:
                ev = grouped[target].get(hadm, empty[target])
                if target == "diagnosis":
                    top = ev[ev["value_num"] <= cfg.max_diagnoses]
                    answer = sorted(set(top["item_label"].astype(str)))
                    if answer and len(answer) <= cfg.max_answer_items:
                        specs.append((adm, target, disch, answer, sorted(top["event_id"])))
                    continue
                horizon = pd.Timedelta(hours=cfg.horizon_hours)
                k = 1
                while k <= cfg.max_anchors:
                    t = admit + pd.Timedelta(hours=24 * k)
                    if t + horizon > disch:
                        break
                    nxt = ev[(ev["event_time"] >= t) & (ev["event_time"] < t + horizon)]
                    answer = sorted(set(nxt["item_label"].astype(str)))
                    if answer and len(answer) <= cfg.max_answer_items:
                        specs.append((adm, target, t, answer, sorted(nxt["event_id"])))
                    k += 1
        cands = [{"instruction_id": instruction_id(ctx.cfg.dataset, self.name, self.version, int(a["hadm_id"]),
                                                   target, str(t)),
                  "template_id": f"next_{target}", "_spec": (a, target, t, ans, ids)}
                 for a, target, t, ans, ids in specs]
        chosen = take_quota(cands, cfg.quota, ctx.seed, group_key="template_id")
        rows = []
        for c in tqdm(chosen, desc="decision_making", disable=not ctx.cfg.progress, unit="row"):
            adm, target, t, answer, ids = c["_spec"]
            hadm = int(adm["hadm_id"])
            start = max(t - pd.Timedelta(hours=cfg.history_hours), pd.Timestamp(adm["admittime"]).floor("min"))
            rendered = ctx.render(hadm, start, t, exclude_types=("diagnosis",) if target == "diagnosis" else ())
            if target == "diagnosis":
                q = (f"The record above covers the last {cfg.history_hours} hours before discharge. List the "
                     f"{cfg.max_diagnoses} highest-priority diagnoses coded for this admission.")
                window = [fmt_time(t), fmt_time(t)]
            else:
                q = (f"Given the record of the preceding {cfg.history_hours} hours, which {NOUNS[target]} will be "
                     f"ordered between {fmt_time(t)} and {fmt_time(t + pd.Timedelta(hours=cfg.horizon_hours))}?")
                window = [fmt_time(t), fmt_time(t + pd.Timedelta(hours=cfg.horizon_hours))]
            q += " Answer with a JSON array of names."
            cand_list = None
            if cfg.candidates:
                others = [v for v in vocab[target] if v not in set(answer)]
                others = sorted(others, key=lambda v: stable_hash(ctx.seed, c["instruction_id"], v))
                n_neg = max(cfg.n_candidates - len(answer), 5)
                cand_list = sorted(answer + others[:n_neg])
                q += " Choose from: " + "; ".join(cand_list) + "."
            lineage = {"source_marts": self.source_marts, "hadm_id": hadm, "target": target,
                       "event_type": TARGET_TYPES[target], "anchor": fmt_time(t), "window": window,
                       "answer_event_ids": ids, "context": rendered.lineage(), "candidates": cand_list,
                       "max_diagnoses": cfg.max_diagnoses if target == "diagnosis" else None}
            rows.append({"instruction_id": c["instruction_id"], "task": self.name, "task_version": self.version,
                         "subject_id": int(adm["subject_id"]), "hadm_id": hadm, "context": rendered.text,
                         "instruction": q, "answer": json.dumps(answer, ensure_ascii=False), "answer_type": "set",
                         "lineage": json.dumps(lineage, sort_keys=True), "template_id": c["template_id"],
                         "prompt_hash": None, "generator_model": None, "seed": ctx.seed,
                         "_data": ctx.admission_fingerprint(hadm)})
        return rows

    @staticmethod
    def _load_targets(ctx, cfg) -> dict[str, pd.DataFrame]:
        out = {}
        with ctx.cohort_view():
            for target in cfg.targets:
                out[target] = ctx.con.execute(
                    "select e.event_id, e.hadm_id, e.event_time, e.item_label, e.value_num from marts.fct_events e "
                    "join _synth_cohort c using (hadm_id) where e.event_type = ? and e.window_status = 'in_admission' "
                    "order by e.hadm_id, e.event_time, e.event_id", [TARGET_TYPES[target]]).df()
        return out

    def recompute(self, con, rows: list[dict]) -> list:
        out = []
        for r in rows:
            lin = json.loads(r["lineage"])
            if lin["target"] == "diagnosis":
                got = con.execute(
                    "select distinct item_label from marts.fct_events where hadm_id = ? and event_type = 'diagnosis' "
                    "and value_num <= ? and window_status = 'in_admission'",
                    [lin["hadm_id"], lin["max_diagnoses"]]).fetchall()
            else:
                got = con.execute(
                    "select distinct item_label from marts.fct_events where hadm_id = ? and event_type = ? "
                    "and window_status = 'in_admission' and event_time >= ?::timestamp and event_time < ?::timestamp",
                    [lin["hadm_id"], lin["event_type"], *lin["window"]]).fetchall()
            out.append(json.dumps(sorted(str(g[0]) for g in got), ensure_ascii=False))
        return out
