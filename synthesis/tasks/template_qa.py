"""Template QA over events (LLemr's schema-alignment families), answers computed from marts.fct_events.

Templates: value_at_time, abnormal_at_time, first_value / last_value / count / min / max / mean in a window
(first 12/24/48 h of the admission, last 12/24/48 h of the record shown, hospital day d), occurred (did X happen in
a window: yes/no), first_time / last_time (when X was first/last recorded in the record shown), los.
No min / max / mean question is asked over values of which one is flagged fct_events.is_implausible (outside the
item's physiological range, seed physiological_ranges): an entry error never becomes an aggregate answer.

A question is asked only when all of its evidence is inside the rendered context: its window lies within the context
window and starts after the latest minute that truncation dropped (Rendered.covers). Items are named by
(event_type, item_label) as they appear in the context. `recompute` answers every row again with SQL over
marts.fct_events using only the row's lineage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable

import pandas as pd
from pydantic import Field

from synthesis.registry import Task, TaskConfig, instruction_id, register_task, stable_hash, take_quota
from synthesis.render import display_unit, display_value, fmt_num, fmt_time

NUMERIC_TYPES = ("lab", "chart", "input", "output")
TEMPLATES = ("value_at_time", "abnormal_at_time", "first_value", "last_value", "count", "min", "max", "mean",
             "occurred", "first_time", "last_time", "los")
WINDOW_TEMPLATES = ("first_value", "last_value", "count", "min", "max", "mean", "occurred")


class TemplateQAConfig(TaskConfig):
    quota: int = Field(400, ge=0)
    templates: list[str] = list(TEMPLATES)
    context_hours: list[int | None] = Field(
        [24, 48, None], description="one context per admission and entry: the first N hours, or null = whole stay")
    window_hours: list[int] = [12, 24, 48]
    max_day: int = Field(3, ge=0, description="hospital-day windows d = 1..max_day")
    value_event_types: list[str] = ["lab", "chart"]
    occurrence_event_types: list[str] = ["lab", "medication_administration", "microbiology", "procedure_icd"]
    per_context: int = Field(2, ge=1, description="most questions per template from one context")


def _unit_of(rows: list[dict]) -> str | None:
    """The one unit all rows share ('' when none has a unit), or None when they disagree."""
    units = {display_unit(r) for r in rows}
    return units.pop() if len(units) == 1 else None


def _windows(cfg: TemplateQAConfig, admittime: pd.Timestamp, start: pd.Timestamp, end: pd.Timestamp):
    out = []
    for h in cfg.window_hours:
        s, e = admittime, admittime + pd.Timedelta(hours=h)
        out.append((f"first_{h}h", s, e, f"during the first {h} hours of the admission ({fmt_time(s)} to {fmt_time(e)})"))
        s, e = end - pd.Timedelta(hours=h), end
        out.append((f"last_{h}h", s, e, f"during the last {h} hours of the record shown ({fmt_time(s)} to {fmt_time(e)})"))
    for d in range(1, cfg.max_day + 1):
        s, e = admittime + pd.Timedelta(hours=24 * (d - 1)), admittime + pd.Timedelta(hours=24 * d)
        out.append((f"day_{d}", s, e, f"on hospital day {d} ({fmt_time(s)} to {fmt_time(e)})"))
    return out


def _label(t: str, label: str) -> str:
    return f"{label} ({'vital sign' if t == 'chart' else t.replace('_', ' ')})"


@dataclass
class _Scope:
    """What every template family needs for one rendered context."""

    ctx: Any
    cfg: "TemplateQAConfig"
    adm: dict
    rendered: Any
    is_full: bool
    want: set[str]
    vals: list[dict]                       # shown events of the value event types, with their label
    windows: list[tuple]                   # (window_id, start, end, phrase) whose every event is shown
    by_item: dict[tuple, list[dict]]       # (event_type, label) -> shown value events
    make: Callable[..., dict]              # (template, key, question, answer, answer_type, lineage extra) -> row
    ordered: Callable[[list, str], list]   # a seeded order of keys for a salt

    @classmethod
    def of(cls, task: "TemplateQA", ctx, cfg, adm, rendered, ctx_id: str, is_full: bool) -> "_Scope":
        seed = ctx.seed
        base_lineage = {"source_marts": task.source_marts, "hadm_id": int(adm["hadm_id"]),
                        "context": rendered.lineage()}
        data = ctx.admission_fingerprint(int(adm["hadm_id"]))

        def make(template: str, key: tuple, question: str, answer: str, answer_type: str, extra: dict) -> dict:
            iid = instruction_id(ctx.cfg.dataset, task.name, task.version, template, ctx_id, *key)
            lineage = dict(base_lineage, template_id=template, **extra)
            return {"instruction_id": iid, "task": task.name, "task_version": task.version,
                    "subject_id": int(adm["subject_id"]), "hadm_id": int(adm["hadm_id"]),
                    "context": rendered.text, "instruction": question, "answer": answer, "answer_type": answer_type,
                    "lineage": json.dumps(lineage, sort_keys=True), "template_id": template, "prompt_hash": None,
                    "generator_model": None, "seed": seed, "_data": data}

        def ordered(keys, salt):
            return sorted(keys, key=lambda k: stable_hash(seed, ctx_id, salt, k))

        vals = [dict(r, _label=str(r["item_label"])) for r in rendered.shown if r["event_type"] in cfg.value_event_types]
        admit = pd.Timestamp(adm["admittime"]).floor("min")
        windows = [w for w in _windows(cfg, admit, rendered.window_start, rendered.window_end)
                   if rendered.covers(w[1], w[2])]
        by_item: dict[tuple, list[dict]] = {}
        for r in vals:  # plain dicts: pandas per-item filtering dominated the run time
            by_item.setdefault((r["event_type"], r["_label"]), []).append(r)
        return cls(ctx, cfg, adm, rendered, is_full, set(cfg.templates), vals, windows, by_item, make, ordered)


@register_task("template_qa", version="1.0", source_marts=["marts.fct_events", "marts.dim_admissions"],
               config=TemplateQAConfig)
class TemplateQA(Task):
    def build(self, ctx, cfg: TemplateQAConfig) -> list[dict]:
        """Contexts are visited in a seeded random order and only until every template has its share of the quota
        (oversampled x2 so the final pick still has a choice): the cost follows the quota, not the warehouse size."""
        from tqdm.auto import tqdm

        contexts = []
        for adm in ctx.admissions.to_dict("records"):
            for hours in cfg.context_hours:
                ctx_id = f"{adm['hadm_id']}:{hours if hours is not None else 'full'}"
                contexts.append((stable_hash(ctx.seed, "context", ctx_id), ctx_id, adm, hours))
        contexts.sort(key=lambda c: c[0])
        want = set(cfg.templates)
        target = 2 * -(-cfg.quota // max(1, len(want)))
        per_template: dict[str, int] = {}
        rows: list[dict] = []
        bar = tqdm(total=cfg.quota, desc="template_qa", disable=not ctx.cfg.progress, unit="row")
        for _, ctx_id, adm, hours in contexts:
            if all(per_template.get(t, 0) >= target for t in want):
                break
            # windows are whole minutes (what the context shows and the lineage records)
            admit = pd.Timestamp(adm["admittime"]).floor("min")
            full_end = pd.Timestamp(adm["dischtime"]).floor("min") + pd.Timedelta(minutes=1)
            end = full_end if hours is None else min(admit + pd.Timedelta(hours=hours), full_end)
            if hours is not None and end == full_end and None in cfg.context_hours:
                continue  # the stay is shorter than N hours: the whole-stay context already covers it
            rendered = ctx.render(adm["hadm_id"], admit, end)
            if rendered.n_events_shown == 0:
                continue
            for cand in self._candidates(ctx, cfg, adm, rendered, ctx_id, is_full=hours is None):
                if per_template.get(cand["template_id"], 0) < target:
                    per_template[cand["template_id"]] = per_template.get(cand["template_id"], 0) + 1
                    rows.append(cand)
            bar.n = min(cfg.quota, sum(min(v, target // 2) for v in per_template.values()))
            bar.refresh()
        bar.close()
        return take_quota(rows, cfg.quota, ctx.seed, group_key="template_id")

    # ------------------------------------------------------------------------------------------- candidates
    # One method per template family; each returns its candidate rows for one rendered context (`_Scope`).
    def _candidates(self, ctx, cfg, adm, rendered, ctx_id: str, is_full: bool):
        s = _Scope.of(self, ctx, cfg, adm, rendered, ctx_id, is_full)
        return [row for family in (self._at_time, self._window_aggregates, self._occurred, self._first_last_time,
                                   self._length_of_stay)
                for row in family(s)]

    def _at_time(self, s: "_Scope") -> list[dict]:
        """value_at_time / abnormal_at_time: the (label, minute) must be unique so the question has one answer."""
        cfg, want, vals = s.cfg, s.want, s.vals
        out: list[dict] = []
        if want & {"value_at_time", "abnormal_at_time"} and vals:
            n_at: dict[tuple, int] = {}
            for r in vals:
                k = (r["event_type"], r["_label"], r["_minute"])
                n_at[k] = n_at.get(k, 0) + 1
            recs = {r["event_id"]: r for r in vals if n_at[(r["event_type"], r["_label"], r["_minute"])] == 1}
            if "value_at_time" in want:
                n = 0
                for eid in s.ordered(list(recs), "value"):
                    r = recs[eid]
                    v = display_value(r)
                    if not v:
                        continue
                    unit = display_unit(r)
                    q = (f"What was the value of {_label(r['event_type'], r['_label'])} at {fmt_time(r['_minute'])}?"
                         + (f" Give it in {unit}." if unit else ""))
                    is_num = pd.notna(r["value_num"]) and _is_float(v)
                    out.append(s.make("value_at_time", (eid,), q, v, "number" if is_num else "text",
                                    {"event_ids": [eid], "event_type": r["event_type"], "item_label": r["_label"],
                                     "time": fmt_time(r["_minute"])}))
                    n += 1
                    if n >= cfg.per_context:
                        break
            if "abnormal_at_time" in want:
                n = 0
                for eid in s.ordered([e for e, r in recs.items() if pd.notna(r["is_abnormal"])], "abn"):
                    r = recs[eid]
                    q = (f"Was the {_label(r['event_type'], r['_label'])} result at {fmt_time(r['_minute'])} flagged "
                         f"abnormal? Answer yes or no.")
                    out.append(s.make("abnormal_at_time", (eid,), q, "yes" if bool(r["is_abnormal"]) else "no", "yes_no",
                                    {"event_ids": [eid], "event_type": r["event_type"], "item_label": r["_label"],
                                     "time": fmt_time(r["_minute"])}))
                    n += 1
                    if n >= cfg.per_context:
                        break

        return out

    def _window_aggregates(self, s: "_Scope") -> list[dict]:
        """first/last value, count, min/max/mean of an item in a window whose every event is shown."""
        cfg, want = s.cfg, s.want
        out: list[dict] = []
        windows, by_item = s.windows, s.by_item
        counts = {t: 0 for t in WINDOW_TEMPLATES}
        for wid, ws, we, phrase in s.ordered(windows, "windows"):
            for key in s.ordered(list(by_item), f"items:{wid}"):
                g = [r for r in by_item[key] if ws <= r["event_time"] < we]
                if not g:
                    continue
                et, label = key
                name = _label(et, label)
                ids = sorted(r["event_id"] for r in g)
                extra = {"event_ids": ids, "event_type": et, "item_label": label, "window_id": wid,
                         "window": [fmt_time(ws), fmt_time(we)]}
                numeric = all(pd.notna(r["value_num"]) for r in g)
                unit = _unit_of(g)
                in_unit = f" (in {unit})" if unit else ""
                for tpl in ("first_value", "last_value"):
                    if tpl not in want or counts[tpl] >= cfg.per_context:
                        continue
                    minutes = [r["_minute"] for r in g]
                    edge = min(minutes) if tpl == "first_value" else max(minutes)
                    values = {display_value(r) for r in g if r["_minute"] == edge}
                    if len(values) != 1 or not next(iter(values)):
                        continue
                    v = values.pop()
                    word = "first" if tpl == "first_value" else "last"
                    q = f"What was the {word} recorded value of {name} {phrase}?" + (f" Give it in {unit}." if unit else "")
                    out.append(s.make(tpl, (wid, et, label), q, v,
                                    "number" if numeric and _is_float(v) else "text", extra))
                    counts[tpl] += 1
                if "count" in want and counts["count"] < cfg.per_context:
                    q = f"How many {name} measurements were recorded {phrase}?"
                    out.append(s.make("count", (wid, et, label), q, str(len(g)), "number", extra))
                    counts["count"] += 1
                # range guard: a value flagged is_implausible (fct_events, seed physiological_ranges) is an entry
                # error; it stays in the context as recorded but never becomes a lowest / highest / mean answer
                guarded = any(bool(r.get("is_implausible")) for r in g)
                if numeric and unit is not None and not guarded:
                    for tpl, fn in (("min", "min"), ("max", "max"), ("mean", "mean")):
                        if tpl not in want or counts[tpl] >= cfg.per_context or (tpl == "mean" and len(g) < 2):
                            continue
                        nums = [float(r["value_num"]) for r in g]
                        val = {"min": min, "max": max, "mean": lambda x: sum(x) / len(x)}[fn](nums)
                        # min/max: the value as recorded; mean: 2 decimals, half up (Python's round() is
                        # half-even on the binary value and would disagree with SQL round())
                        ans = fmt_num(half_up(val, 2) if tpl == "mean" else float(val))
                        word = {"min": "lowest", "max": "highest", "mean": "mean"}[tpl]
                        rnd = " Round to 2 decimals." if tpl == "mean" else ""
                        q = f"What was the {word} value of {name}{in_unit} {phrase}?{rnd}"
                        out.append(s.make(tpl, (wid, et, label), q, ans, "number", extra))
                        counts[tpl] += 1
            if all(counts[t] >= cfg.per_context for t in WINDOW_TEMPLATES if t in want and t != "occurred"):
                break

        return out

    def _occurred(self, s: "_Scope") -> list[dict]:
        """occurred: yes from items shown in a window, no from items of the same type elsewhere in the stay."""
        ctx, cfg, adm, want = s.ctx, s.cfg, s.adm, s.want
        out: list[dict] = []
        windows = s.windows
        if "occurred" in want and windows:
            occ_all = ctx.events(adm["hadm_id"])
            occ_all = occ_all[occ_all["event_type"].isin(cfg.occurrence_event_types)
                              & occ_all["event_type"].isin(ctx.cfg.render.event_types)]
            n = 0
            for wid, ws, we, phrase in s.ordered(windows, "occ-windows"):
                if n >= cfg.per_context:
                    break
                inside = occ_all[(occ_all["event_time"] >= ws) & (occ_all["event_time"] < we)]
                present = set(zip(inside["event_type"], inside["item_label"].astype(str)))
                elsewhere = set(zip(occ_all["event_type"], occ_all["item_label"].astype(str))) - present
                for answer, pool in (("yes", present), ("no", elsewhere)):
                    for et, label in s.ordered(sorted(pool), f"occ:{wid}:{answer}")[:1]:
                        ids = sorted(inside[(inside["event_type"] == et) & (inside["item_label"] == label)]["event_id"])
                        q = f"Was {_label(et, label)} recorded {phrase}? Answer yes or no."
                        out.append(s.make("occurred", (wid, et, label), q, answer, "yes_no",
                                        {"event_ids": ids, "event_type": et, "item_label": label, "window_id": wid,
                                         "window": [fmt_time(ws), fmt_time(we)]}))
                        n += 1

        return out

    def _first_last_time(self, s: "_Scope") -> list[dict]:
        """first_time / last_time of an item within the part of the record shown."""
        cfg, rendered, want, vals = s.cfg, s.rendered, s.want, s.vals
        out: list[dict] = []
        by_item = s.by_item
        if want & {"first_time", "last_time"} and vals:
            vs = (rendered.visible_after + pd.Timedelta(minutes=1)) if rendered.truncated else rendered.window_start
            ve = rendered.window_end
            for tpl in ("first_time", "last_time"):
                if tpl not in want:
                    continue
                for key in s.ordered(list(by_item), tpl)[: cfg.per_context]:
                    g = by_item[key]
                    et, label = key
                    minutes = [r["_minute"] for r in g]
                    edge = min(minutes) if tpl == "first_time" else max(minutes)
                    word = "first" if tpl == "first_time" else "last"
                    q = (f"When was {_label(et, label)} {word} recorded between {fmt_time(vs)} and {fmt_time(ve)}? "
                         f"Answer with the time as YYYY-MM-DD HH:MM.")
                    ids = sorted(r["event_id"] for r in g if r["_minute"] == edge)
                    out.append(s.make(tpl, (et, label), q, fmt_time(edge), "text",
                                    {"event_ids": ids, "event_type": et, "item_label": label,
                                     "window": [fmt_time(vs), fmt_time(ve)]}))

        return out

    def _length_of_stay(self, s: "_Scope") -> list[dict]:
        """los: only when the whole stay, discharge included, is in the context."""
        adm, rendered, want = s.adm, s.rendered, s.want
        out: list[dict] = []
        shown = rendered.shown
        if "los" in want and s.is_full and rendered.covers(pd.Timestamp(adm["dischtime"]).floor("min"),
                                                          rendered.window_end):
            disch_ids = sorted(r["event_id"] for r in shown if r["event_type"] == "discharge")
            if disch_ids:
                seconds = int((pd.Timestamp(adm["dischtime"]) - pd.Timestamp(adm["admittime"])).total_seconds())
                q = "How many days did this hospital stay last, from admission to discharge? Round to 1 decimal."
                # tenths of a day rounded half up, in integers: the same in Python and in SQL
                out.append(s.make("los", (), q, fmt_num(((seconds * 10 + 43200) // 86400) / 10), "number",
                                {"event_ids": disch_ids, "admittime": str(adm["admittime"]),
                                 "dischtime": str(adm["dischtime"])}))
        return out

    # -------------------------------------------------------------------------------------------- recompute
    def recompute(self, con, rows: list[dict]) -> list[Any]:
        """Every answer again, from SQL over marts.fct_events / dim_admissions and the lineage alone."""
        return [self._recompute_one(con, json.loads(r["lineage"]), r["template_id"]) for r in rows]

    @staticmethod
    def _recompute_one(con, lin: dict, tpl: str):
        base = ("from marts.fct_events where hadm_id = ? and event_type = ? and item_label = ? "
                "and window_status = 'in_admission'")
        if tpl in ("value_at_time", "abnormal_at_time"):
            rows = con.execute(
                f"select value_text, value_num, is_abnormal {base} and date_trunc('minute', event_time) = ?::timestamp",
                [lin["hadm_id"], lin["event_type"], lin["item_label"], lin["time"]]).fetchall()
            if len(rows) != 1:
                return None
            text, num, abn = rows[0]
            if tpl == "abnormal_at_time":
                return None if abn is None else ("yes" if abn else "no")
            return _value(text, num)
        if tpl == "los":
            (days,) = con.execute(
                "select (date_diff('second', admittime, dischtime) * 10 + 43200) // 86400 "
                "from marts.dim_admissions where hadm_id = ?", [lin["hadm_id"]]).fetchone()
            return fmt_num(days / 10)
        ws, we = lin["window"]
        # windows are whole minutes; an event at 06:00:30 belongs to the minute 06:00
        win = (f"{base} and date_trunc('minute', event_time) >= ?::timestamp "
               f"and date_trunc('minute', event_time) < ?::timestamp")
        args = [lin["hadm_id"], lin["event_type"], lin["item_label"], ws, we]
        if tpl == "occurred":
            (n,) = con.execute(f"select count(*) {win}", args).fetchone()
            return "yes" if n else "no"
        if tpl == "count":
            return str(con.execute(f"select count(*) {win}", args).fetchone()[0])
        if tpl in ("min", "max", "mean"):
            fn = {"min": "min", "max": "max", "mean": "avg"}[tpl]
            # the range guard in SQL, mimic-code style: implausible values never enter an aggregate
            (v,) = con.execute(f"select {fn}(value_num) filter (where not is_implausible) {win}", args).fetchone()
            return None if v is None else fmt_num(half_up(v, 2) if tpl == "mean" else float(v))
        if tpl in ("first_value", "last_value"):
            agg = "min" if tpl == "first_value" else "max"
            rows = con.execute(
                f"select value_text, value_num {win} "
                f"and date_trunc('minute', event_time) = (select {agg}(date_trunc('minute', event_time)) {win})",
                args + args).fetchall()
            values = {_value(t, n) for t, n in rows}
            return values.pop() if len(values) == 1 else None
        if tpl in ("first_time", "last_time"):
            agg = "min" if tpl == "first_time" else "max"
            (t,) = con.execute(f"select {agg}(date_trunc('minute', event_time)) {win}", args).fetchone()
            return None if t is None else fmt_time(t)
        raise ValueError(f"unknown template {tpl!r}")


def half_up(x: float, digits: int) -> float:
    """Round half away from zero on the decimal repr of x (what people and SQL round() do)."""
    q = Decimal(1).scaleb(-digits)
    return float(Decimal(repr(float(x))).quantize(q, rounding=ROUND_HALF_UP))


def _value(text, num) -> str:
    return display_value({"value_text": text, "value_num": num})


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except (TypeError, ValueError):
        return False
