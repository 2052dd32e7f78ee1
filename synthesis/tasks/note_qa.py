"""Note QA through the LLM client: Asclepius's 8 task types, and LLemr-style reasoning QA over the hospital course.

For each sampled (note, task type) the generator gets the task description, few-shot examples and the note, and
must reply with one JSON object {"instruction": ..., "answer": ...}. Outputs are parsed and filtered (see
llm_io.check_instruction_answer plus task checks: extracted entities must occur in the note, unanswerable
questions must carry the canonical answer and answerable ones must not); rejected outputs are kept in
synthesis.llm_outputs with their reason and never become rows.

Bootstrapping (Asclepius): requests run in `bootstrap_rounds` rounds; outputs accepted in earlier rounds join the
example pool of their task type for later rounds, within the same split only (no text crosses splits).

On the demo the notes are PMC-Patients case summaries (chief complaint / HPI / brief hospital course) that do NOT
describe the admission they are attached to: with `notes_describe_admission: false` every row's lineage says so.

`note_source: synthetic` runs the same tasks over the synthetic discharge summaries that case_report_note wrote
from public case reports (synthesis.synthetic_notes; of this run, or of `synthetic_notes_dataset`): Asclepius's
instruction set. Those rows have no patient (subject_id / hadm_id null) and take their case report's split. Each
request names the table its note came from; the PHI guard derives from it where the request may go.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

import yaml
from typing import Literal

from pydantic import Field, field_validator

from ehrforge import provenance

from ehrforge.llm.cache import prompt_hash
from synthesis.llm_io import (UNANSWERABLE, OutputLog, Rejected, check_instruction_answer, dumps, generator_model,
                              parse_json_object, run_requests)
from synthesis.registry import Task, TaskConfig, instruction_id, register_task, stable_hash, take_quota
from synthesis.synthetic_notes import SYNTHETIC_NOTES_TABLE, split_sections, synthetic_notes_for

SEEDS = Path(__file__).resolve().parent.parent / "seeds" / "asclepius.yaml"
ASCLEPIUS_TASKS = ("named_entity_recognition", "abbreviation_expansion", "relation_extraction",
                   "temporal_information_extraction", "coreference_resolution", "paraphrasing", "summarization",
                   "question_answering")
MIN_NOTE_CHARS = 200  # shorter note context gives the generator too little to write from
SYSTEM = ("You write instruction-tuning data from clinical notes. Reply with exactly one JSON object "
          '{"instruction": "...", "answer": "..."} and nothing else.')


@lru_cache(maxsize=1)
def load_seeds() -> dict:
    return yaml.safe_load(SEEDS.read_text())


def _same(a: str, b: str) -> bool:
    """Equal after lower-casing and dropping punctuation, or one the other with a few words changed (>= 80 % of
    the longer one's words shared, in order-free count)."""
    wa, wb = re.findall(r"\w+", a.lower()), re.findall(r"\w+", b.lower())
    if not wa or not wb:
        return False
    shared = sum((Counter(wa) & Counter(wb)).values())
    return shared / max(len(wa), len(wb)) >= 0.8


class NoteQAConfig(TaskConfig):
    quota: int = Field(24, ge=0)  # LLM requests (rows are the accepted ones)
    task_types: list[str] = list(ASCLEPIUS_TASKS)
    sections: list[str] | None = Field(None, description="note sections used as context; null = the whole note")
    note_max_chars: int = Field(4000, ge=200)
    n_shots: int = Field(2, ge=0)
    bootstrap_rounds: int = Field(2, ge=1)
    unanswerable_fraction: float = Field(0.1, ge=0, le=1, description="share of QA requests asking for an "
                                         "unanswerable question")
    notes_describe_admission: bool = Field(True, description="false for the demo (PMC-Patients stand-in notes)")
    max_new_tokens: int = Field(256, ge=8)
    max_answer_chars: int = 2000
    note_source: Literal["mimic", "synthetic"] = Field(
        "mimic", description="mimic: discharge notes of the cohort (marts.fct_notes); synthetic: the notes "
        "case_report_note wrote from public case reports (synthesis.synthetic_notes)")
    synthetic_notes_dataset: str | None = Field(None, description="dataset whose synthetic notes are read "
                                                "(default: this config's dataset)")

    @field_validator("task_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        bad = sorted(set(v) - set(ASCLEPIUS_TASKS) - {"reasoning_qa"})
        if bad or not v:
            raise ValueError(f"unknown task type(s) {bad}; known: {', '.join(ASCLEPIUS_TASKS)}, reasoning_qa")
        return v


class ReasoningQAConfig(NoteQAConfig):
    quota: int = Field(12, ge=0)
    task_types: list[str] = ["reasoning_qa"]
    sections: list[str] | None = ["brief_hospital_course"]


SECTION_TITLES = {"chief_complaint": "Chief Complaint", "history_of_present_illness": "History of Present Illness",
                  "past_medical_history": "Past Medical History", "brief_hospital_course": "Brief Hospital Course",
                  "discharge_diagnosis": "Discharge Diagnosis", "discharge_medications": "Discharge Medications",
                  "discharge_instructions": "Discharge Instructions", "impression": "Impression",
                  "assessment_and_plan": "Assessment and Plan"}


class _NoteTask(Task):
    @staticmethod
    def note_tables(cfg) -> list[str]:
        """The warehouse tables the note text comes from (Request.sources: the PHI guard's provenance input)."""
        return [SYNTHETIC_NOTES_TABLE] if cfg.note_source == "synthetic" else ["marts.fct_notes"]

    def _synthetic_notes(self, ctx, cfg) -> list[dict]:
        dataset = cfg.synthetic_notes_dataset or ctx.cfg.dataset
        out = []
        for r in synthetic_notes_for(ctx, dataset):
            sec = split_sections(r["note_text"])
            n = {"note_id": r["synthetic_note_id"], "subject_id": None, "hadm_id": None, "_split": r["split"],
                 "case_report_id": r["case_report_id"], "clean_text": r["note_text"]}
            n.update({k: sec.get(k) for k in SECTION_TITLES})
            out.append(n)
        st = ctx.stats.setdefault(self.name, {})
        st["n_cohort_notes"], st["n_notes_text_shared_across_splits"] = len(out), 0
        if not out:
            st["no_rows_reason"] = (f"0 synthetic notes of dataset {dataset!r} in {SYNTHETIC_NOTES_TABLE} (enable "
                                    "case_report_note in this config, or run the config that writes them first)")
        return out

    def _notes(self, ctx, cfg):
        if cfg.note_source == "synthetic":
            notes = self._synthetic_notes(ctx, cfg)
            if not notes:
                return []
        else:
            notes = ctx.cohort_notes(self.name, ["note_type", "clean_text", *SECTION_TITLES]).to_dict("records")
        out = []
        n_with_sections = 0
        for n in notes:
            if cfg.sections:
                parts = [f"{SECTION_TITLES[s]}: {str(n[s]).strip()}" for s in cfg.sections
                         if n.get(s) is not None and str(n[s]).strip() and str(n[s]) != "nan"]
                text = "\n".join(parts)
            else:
                text = (n["clean_text"] or "").strip()
            n_with_sections += bool(text)
            if len(text) >= MIN_NOTE_CHARS:
                out.append((n, text[: cfg.note_max_chars]))
        if not out:  # say why in the run summary: no prompts without notes to write them from
            ctx.stats.setdefault(self.name, {})["no_rows_reason"] = self._why_no_notes(
                ctx, cfg, n_with_sections)
        return out

    def _why_no_notes(self, ctx, cfg, n_with_sections: int) -> str:
        st = ctx.stats[self.name]
        n, shared = st["n_cohort_notes"], st["n_notes_text_shared_across_splits"]
        left = n - shared
        if n == 0 and cfg.note_source == "synthetic":
            return st["no_rows_reason"]
        if n == 0:
            return (f"0 discharge notes in marts.fct_notes for the {len(ctx.admissions)} cohort admissions "
                    "(no MIMIC-IV-Note folder, or no note matches the cohort)")
        if left == 0:
            return f"all {n} cohort notes left out: their text is shared by patients of different splits"
        if cfg.sections and n_with_sections == 0:
            names = " or ".join(SECTION_TITLES[s].lower() for s in cfg.sections)
            return f"0 of {left} notes have a {names}"
        what = f"{' + '.join(SECTION_TITLES[s].lower() for s in cfg.sections)} text" if cfg.sections else "text"
        return f"0 of {left} notes have {MIN_NOTE_CHARS}+ characters of {what} ({n_with_sections} have some)"

    def _prompt(self, task_type: str, note_text: str, shots: list[dict], unanswerable: bool) -> list[dict]:
        seeds = load_seeds()
        spec = seeds["reasoning_qa"] if task_type == "reasoning_qa" else seeds["tasks"][task_type]
        lines = [f"Task type: {task_type.replace('_', ' ')}.", spec["description"], ""]
        for i, ex in enumerate(shots, 1):
            lines += [f"Example {i} (for a different note):",
                      json.dumps({"instruction": ex["instruction"], "answer": ex["answer"]}, ensure_ascii=False), ""]
        if unanswerable:
            lines += [seeds["unanswerable_instruction"].strip(), ""]
        lines += ["Note:", note_text, "", "Reply with the JSON object only."]
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(lines)}]

    @staticmethod
    def check(task_type: str, obj: dict, note_text: str, unanswerable: bool, max_answer_chars: int,
              shots: list[dict] | None = None) -> tuple[str, str]:
        ins, ans = check_instruction_answer(obj, note_text, max_answer_chars=max_answer_chars)
        # Small models copy the worked example's answer, which is about another note, not this one. (A copied
        # instruction is fine: "List every medication in the note." fits any note; the answer must be this note's.)
        is_canonical = ans.strip().rstrip(".").lower() == UNANSWERABLE.rstrip(".").lower()
        if not is_canonical and any(_same(ans, s["answer"]) for s in shots or []):
            raise Rejected("copies_example")
        is_unans = ans.strip().rstrip(".").lower() == UNANSWERABLE.rstrip(".").lower()
        if unanswerable and not is_unans:
            raise Rejected("unanswerable_mismatch", "asked for an unanswerable question, got an answer")
        if not unanswerable and is_unans:
            raise Rejected("unexpected_unanswerable")
        if unanswerable:
            return ins, UNANSWERABLE
        low = note_text.lower()
        if task_type == "named_entity_recognition":
            items = [a.strip() for a in ans.split(";") if a.strip()]
            missing = [a for a in items if a.lower() not in low]
            if not items or missing:
                raise Rejected("entity_not_in_note", "; ".join(missing[:3]))
        if task_type == "abbreviation_expansion":
            pairs = [p.split(":", 1)[0].strip() for p in ans.split(";") if ":" in p]
            if not pairs or any(p.lower() not in low for p in pairs):
                raise Rejected("abbreviation_not_in_note")
        if task_type == "coreference_resolution" and ans.lower() not in low:
            raise Rejected("referent_not_in_note")
        return ins, ans

    def build(self, ctx, cfg) -> list[dict]:
        notes = self._notes(ctx, cfg)
        seeds = load_seeds()
        # one candidate request per (note, task type); quota picks which, balanced over task types
        cands = []
        for n, text in notes:
            for tt in cfg.task_types:
                rid = instruction_id(ctx.cfg.dataset, self.name, self.version, n["note_id"], tt)
                unans = tt in ("question_answering", "reasoning_qa") and \
                    int(stable_hash(ctx.seed, "unans", rid), 16) % 1000 < cfg.unanswerable_fraction * 1000
                cands.append({"instruction_id": rid, "template_id": tt, "_n": n, "_text": text, "_unans": unans})
        chosen = take_quota(cands, cfg.quota, ctx.seed, group_key="template_id")
        chosen.sort(key=lambda c: stable_hash(ctx.seed, "round", c["instruction_id"]))
        seed_pool = {tt: [dict(e, _id=f"seed:{tt}:{i}") for i, e in enumerate(
            (seeds["reasoning_qa"] if tt == "reasoning_qa" else seeds["tasks"][tt])["examples"])]
            for tt in cfg.task_types}
        boot: dict[tuple[str, str], list[dict]] = {}  # (task type, split) -> accepted examples
        log = OutputLog(ctx, self.name)
        rows = []
        from ehrforge.llm import Request

        sources = self.note_tables(cfg)
        is_public = provenance.of_tables(sources) == provenance.PUBLIC

        n_rounds = cfg.bootstrap_rounds
        for rnd in range(n_rounds):
            part = chosen[rnd::n_rounds]
            reqs, meta = [], []
            for c in part:
                n, tt = c["_n"], c["template_id"]
                split = n.get("_split") or ctx.split_of(n["subject_id"])
                pool = seed_pool[tt] + boot.get((tt, split), [])
                shots = sorted(pool, key=lambda e: stable_hash(ctx.seed, c["instruction_id"], e["_id"]))[: cfg.n_shots]
                msgs = self._prompt(tt, c["_text"], shots, c["_unans"])
                reqs.append(Request(id=c["instruction_id"], messages=msgs, contains_phi=not is_public, sources=sources,
                                    max_new_tokens=cfg.max_new_tokens, seed=ctx.seed))
                meta.append((c, shots, msgs, split))
            responses = run_requests(ctx, self.name, reqs)
            for (c, shots, msgs, split), resp in zip(meta, responses):
                n, tt = c["_n"], c["template_id"]
                p_hash = prompt_hash(msgs)
                if resp.error:
                    log.add(c["instruction_id"], n["note_id"], p_hash, resp, "rejected", "call_failed")
                    continue
                try:
                    ins, ans = self.check(tt, parse_json_object(resp.text), c["_text"], c["_unans"],
                                          cfg.max_answer_chars, shots)
                except Rejected as rej:
                    log.add(c["instruction_id"], n["note_id"], p_hash, resp, "rejected", rej.reason)
                    continue
                log.add(c["instruction_id"], n["note_id"], p_hash, resp, "accepted", instruction_id=c["instruction_id"])
                boot.setdefault((tt, split), []).append({"instruction": ins, "answer": ans,
                                                         "_id": c["instruction_id"]})
                hadm = None if n["hadm_id"] is None else int(n["hadm_id"])
                lineage = {"source_marts": sources, "note_id": n["note_id"], "hadm_id": hadm,
                           "sections": cfg.sections or "all", "task_type": tt, "round": rnd,
                           "shot_ids": [s["_id"] for s in shots], "unanswerable": c["_unans"],
                           "note_describes_admission": cfg.notes_describe_admission, "cache_key": resp.cache_key,
                           "note_source": cfg.note_source, "provenance": provenance.of_tables(sources)}
                if cfg.note_source == "synthetic":
                    lineage["case_report_id"] = n["case_report_id"]
                rows.append({"instruction_id": c["instruction_id"], "task": self.name, "task_version": self.version,
                             "subject_id": None if n["subject_id"] is None else int(n["subject_id"]), "hadm_id": hadm,
                             "split": split, "context": c["_text"],
                             "instruction": ins, "answer": ans, "answer_type": "text", "lineage": dumps(lineage),
                             "template_id": tt, "prompt_hash": p_hash, "generator_model": generator_model(ctx),
                             "seed": ctx.seed, "_data": stable_hash(n["note_id"], c["_text"])})
        log.close()
        return rows


@register_task("note_qa", version="1.1", source_marts=["marts.fct_notes"], config=NoteQAConfig, uses_llm=True,
               depends_on=["case_report_note"])  # over synthetic notes: after the task that writes them
class NoteQA(_NoteTask):
    pass


@register_task("note_reasoning_qa", version="1.1", source_marts=["marts.fct_notes"], config=ReasoningQAConfig,
               uses_llm=True, depends_on=["case_report_note"])
class NoteReasoningQA(_NoteTask):
    pass
