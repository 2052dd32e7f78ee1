"""Case report -> synthetic discharge summary in MIMIC-IV-Note style (Asclepius's first step, Kweon et al. 2024).

Each sampled public case report (marts.dim_case_reports, PMC-Patients) goes to the generator with an
Asclepius-style prompt: rewrite the case as a discharge summary under fixed MIMIC-IV-Note headings, in your own
words, adding nothing the report does not say. Outputs are plain text (no JSON: a 135M model writes a note more
reliably than a JSON-escaped one) and are filtered, every rejection counted by reason in the run summary and kept in
synthesis.llm_outputs:

  empty_output, call_failed    nothing usable came back
  too_short / too_long         fewer than min_note_words / more than max_note_words words
  missing_sections             a heading of `required_sections` is absent (at the start of a line, "Heading:")
  verbatim_copy                the longest run of consecutive words shared with the case report is
                               >= max_copied_ngram (the note must paraphrase, not copy)
  template_leak, garbage_characters   chat tokens / placeholders, or non-printable output

`prompt_style: per_section` (for small models) asks for one section per request ("write only the Brief Hospital
Course, in 2-3 sentences, in your own words") and assembles the note under the headings; the first paragraph of each
answer is kept (small models repeat themselves). The filters above then judge the assembled note exactly as a whole
one: length, non-empty required sections, verbatim copy.

Accepted notes go to synthesis.synthetic_notes (a dbt source declared `provenance: public`) with lineage to their
case report (case_report_id, PMID), the case report's split (made in dim_case_reports), the copy length and the
sections found. The task also writes instruction rows (context = the case report excerpt, answer = the note) for
training a note generator; their subject_id / hadm_id are null (no MIMIC patient), their split the case report's.

Every request names its source table; the PHI guard derives its provenance from it (public here), so the config can
send these prompts to an endpoint listed in `public_data_endpoints` without a PHI attestation (docs/asclepius.md).
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Literal

from pydantic import Field, field_validator

from ehrforge import provenance
from ehrforge.errors import InputDataError
from ehrforge.llm.cache import prompt_hash
from synthesis.llm_io import OutputLog, Rejected, dumps, generator_model, run_requests
from synthesis.registry import Task, TaskConfig, instruction_id, register_task, stable_hash, take_quota
from synthesis.synthetic_notes import NOTE_SECTIONS, SYNTHETIC_NOTES_TABLE, longest_common_ngram, split_sections, tokens

SOURCE = "marts.dim_case_reports"
SYSTEM = "You are a physician writing discharge summaries."
# Asclepius's instruction (Kweon et al., 2024, appendix) adapted: MIMIC-IV-Note headings, and the rule that the note
# must be written in the model's own words (the verbatim-copy filter rejects long copied runs).
PROMPT = """Below is a case report from a medical journal. Rewrite it as the hospital discharge summary of this patient.

Rules:
- Use exactly these headings, each at the start of a line and followed by a colon: {headings}.
- Write in the terse style of a discharge summary, in your own words. Do not copy sentences from the case report.
- Use only facts from the case report. Do not invent names, dates or results.

Case report:
{case}

Discharge summary:"""
SECTION_PROMPT = """Case report:
{case}

You are writing the hospital discharge summary of this patient. Write only its "{title}" section: {guidance}.
Use your own words; do not copy sentences from the case report. Do not write the heading."""
SECTION_GUIDANCE = {
    "chief_complaint": "the main reason the patient came to hospital, in a few words",
    "history_of_present_illness": "how the illness began and why the patient came to hospital, in 2-3 short sentences",
    "past_medical_history": "earlier illnesses, as a short list",
    "brief_hospital_course": "what was done in hospital and how the patient did, in 2-3 short sentences",
    "discharge_diagnosis": "the final diagnosis, in a few words",
    "discharge_medications": "the medicines at discharge, as a short list",
    "discharge_instructions": "advice and follow-up for the patient, in 1-2 sentences",
}


class CaseReportNoteConfig(TaskConfig):
    quota: int = Field(8, ge=0, description="case reports sent to the generator (accepted notes are fewer)")
    case_max_chars: int = Field(1500, ge=200, description="case report excerpt in the prompt (whole sentences)")
    min_case_chars: int = Field(400, ge=0, description="shorter case reports are not used")
    headings: list[str] = Field(default_factory=lambda: ["chief_complaint", "history_of_present_illness",
                                                         "brief_hospital_course", "discharge_diagnosis",
                                                         "discharge_instructions"])
    required_sections: list[str] = Field(default_factory=lambda: ["history_of_present_illness",
                                                                  "brief_hospital_course"])
    min_note_words: int = Field(40, ge=1)
    max_note_words: int = Field(1200, ge=10)
    max_copied_ngram: int = Field(20, ge=2, description="reject a note sharing a run of this many consecutive "
                                  "words with its case report")
    max_new_tokens: int = Field(400, ge=8, description="per request (per section with prompt_style per_section)")
    prompt_style: Literal["whole_note", "per_section"] = Field(
        "whole_note", description="per_section: one request per heading, assembled (small models)")
    instruction_rows: bool = Field(True, description="also write case report -> note instruction rows")

    @field_validator("headings", "required_sections")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = sorted(set(v) - set(NOTE_SECTIONS))
        if bad:
            raise ValueError(f"unknown section(s) {bad}; known: {', '.join(NOTE_SECTIONS)}")
        return v


def excerpt(text: str, max_chars: int) -> str:
    """The case report cut to whole sentences within max_chars (the first sentence is always kept)."""
    text = re.sub(r"\s+", " ", text or "").strip()
    if len(text) <= max_chars:
        return text
    sents = re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", text)
    out = sents[0][:max_chars]
    for s in sents[1:]:
        if len(out) + 1 + len(s) > max_chars:
            break
        out += " " + s
    return out


def check_note(text: str | None, case: str, cfg: CaseReportNoteConfig) -> dict:
    """Filters of a generated note; returns {note_text, n_words, longest_copied_ngram, sections} or raises Rejected."""
    if text is None or not text.strip():
        raise Rejected("empty_output")
    note = text.strip()
    if re.search(r"<\|im_(start|end)\|>|\{\{|\}\}|\[INSERT|\{case\}|\{headings\}", note):
        raise Rejected("template_leak")
    if sum(ch.isprintable() or ch in "\n\t" for ch in note) / len(note) < 0.98:
        raise Rejected("garbage_characters")
    n_words = len(tokens(note))
    if n_words < cfg.min_note_words:
        raise Rejected("too_short", f"{n_words} words")
    if n_words > cfg.max_note_words:
        raise Rejected("too_long", f"{n_words} words")
    sections = split_sections(note)
    missing = [s for s in cfg.required_sections if not sections.get(s)]
    if missing:
        raise Rejected("missing_sections", ", ".join(missing))
    copied = longest_common_ngram(note, case)
    if copied >= cfg.max_copied_ngram:
        raise Rejected("verbatim_copy", f"{copied} consecutive words from the case report")
    return {"note_text": note, "n_words": n_words, "longest_copied_ngram": copied, "sections": sorted(sections)}


@register_task("case_report_note", version="1.0", source_marts=[SOURCE], config=CaseReportNoteConfig, uses_llm=True)
class CaseReportNote(Task):
    def prompt(self, case: str, cfg: CaseReportNoteConfig) -> list[dict]:
        headings = ", ".join(NOTE_SECTIONS[h] for h in cfg.headings)
        return [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": PROMPT.format(headings=headings, case=case)}]

    def section_prompt(self, case: str, section: str) -> list[dict]:
        return [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": SECTION_PROMPT.format(case=case, title=NOTE_SECTIONS[section],
                                                                  guidance=SECTION_GUIDANCE[section])}]

    @staticmethod
    def clean_section(text: str | None, section: str) -> str:
        """The first paragraph of a section answer, without a heading the model wrote anyway."""
        text = (text or "").strip()
        text = re.sub(rf"^[#*\s]*{re.escape(NOTE_SECTIONS[section])}[*\s]*:?[*\s]*", "", text, flags=re.I)
        return re.split(r"\n\s*\n", text, 1)[0].strip()

    def _generate(self, ctx, cfg, chosen, sources, prov):
        """(candidate, case excerpt, prompt messages for the lineage, response-like) per chosen case report."""
        from ehrforge.llm import Request

        cases = [excerpt(c["_r"]["case_text"], cfg.case_max_chars) for c in chosen]
        if cfg.prompt_style == "whole_note":
            msgs = [self.prompt(case, cfg) for case in cases]
            reqs = [Request(id=c["instruction_id"], messages=m, sources=sources, contains_phi=prov != provenance.PUBLIC,
                            max_new_tokens=cfg.max_new_tokens, seed=ctx.seed) for c, m in zip(chosen, msgs)]
            return list(zip(chosen, cases, msgs, run_requests(ctx, self.name, reqs)))
        reqs = [Request(id=f"{c['instruction_id']}:{h}", messages=self.section_prompt(case, h), sources=sources,
                        contains_phi=prov != provenance.PUBLIC, max_new_tokens=cfg.max_new_tokens, seed=ctx.seed)
                for c, case in zip(chosen, cases) for h in cfg.headings]
        responses = iter(run_requests(ctx, self.name, reqs))
        out = []
        for c, case in zip(chosen, cases):
            parts = [(h, next(responses)) for h in cfg.headings]
            errors = [r.error for _, r in parts if r.error]
            body = "\n".join(f"{NOTE_SECTIONS[h]}: {self.clean_section(r.text, h)}" for h, r in parts
                             if self.clean_section(r.text, h))
            resp = SimpleNamespace(error=errors[0] if errors else None, text=body,
                                   cache_key=",".join(r.cache_key for _, r in parts),
                                   cached=all(r.cached for _, r in parts))
            out.append((c, case, [m for h in cfg.headings for m in self.section_prompt(case, h)], resp))
        return out

    def build(self, ctx, cfg: CaseReportNoteConfig) -> list[dict]:
        sources = [SOURCE]
        prov = provenance.of_tables(sources)
        if prov != provenance.PUBLIC:  # the table's declaration changed: its notes could not be declared public
            raise InputDataError(f"{SOURCE} is not public by its dbt declaration; case_report_note writes "
                                 f"{SYNTHETIC_NOTES_TABLE}, which holds public text only")
        reports = ctx.con.execute(
            f"select case_report_id, pmid, title, case_text, split from {SOURCE} where n_chars >= ? "
            "order by case_report_id", [cfg.min_case_chars]).df()
        st = ctx.stats.setdefault(self.name, {})
        st["n_case_reports"] = len(reports)
        if reports.empty:
            st["no_rows_reason"] = (f"0 case reports of {cfg.min_case_chars}+ characters in {SOURCE} "
                                    "(PMC_PATIENTS_CSV unset when the warehouse was built?)")
            return []
        cands = [{"instruction_id": instruction_id(ctx.cfg.dataset, self.name, self.version, r["case_report_id"]),
                  "_r": r} for r in reports.to_dict("records")]
        chosen = take_quota(cands, cfg.quota, ctx.seed)
        generated = self._generate(ctx, cfg, chosen, sources, prov)
        log = OutputLog(ctx, self.name)
        notes, rows = [], []
        for c, case, msgs, resp in generated:
            r, p_hash = c["_r"], prompt_hash(msgs)
            if resp.error:
                log.add(c["instruction_id"], r["case_report_id"], p_hash, resp, "rejected", "call_failed")
                continue
            try:
                got = check_note(resp.text, case, cfg)
            except Rejected as rej:
                log.add(c["instruction_id"], r["case_report_id"], p_hash, resp, "rejected", rej.reason)
                continue
            log.add(c["instruction_id"], r["case_report_id"], p_hash, resp, "accepted",
                    instruction_id=c["instruction_id"] if cfg.instruction_rows else None)
            data = stable_hash(case, got["note_text"])
            note_id = f"synnote-{stable_hash(ctx.cfg.dataset, r['case_report_id'], data)}"
            notes.append({"dataset": ctx.cfg.dataset, "synthetic_note_id": note_id,
                          "case_report_id": r["case_report_id"], "pmid": int(r["pmid"]) if r["pmid"] == r["pmid"]
                          else None, "split": r["split"], "note_text": got["note_text"], "n_words": got["n_words"],
                          "longest_copied_ngram": got["longest_copied_ngram"], "sections": dumps(got["sections"]),
                          "source_tables": dumps(sources), "provenance": prov, "task_version": self.version,
                          "generator_model": generator_model(ctx), "prompt_hash": p_hash,
                          "cache_key": resp.cache_key})
            if cfg.instruction_rows:
                lineage = {"source_marts": [SOURCE], "case_report_id": r["case_report_id"], "pmid": r["pmid"],
                           "synthetic_note_id": note_id, "provenance": prov, "cache_key": resp.cache_key,
                           "longest_copied_ngram": got["longest_copied_ngram"], "case_max_chars": cfg.case_max_chars}
                rows.append({"instruction_id": c["instruction_id"], "task": self.name, "task_version": self.version,
                             "subject_id": None, "hadm_id": None, "split": r["split"], "context": case,
                             "instruction": "Rewrite this case report as the patient's discharge summary.",
                             "answer": got["note_text"], "answer_type": "text", "lineage": dumps(lineage),
                             "template_id": "case_report_to_discharge_summary", "prompt_hash": p_hash,
                             "generator_model": generator_model(ctx), "seed": ctx.seed, "_data": data})
        log.close()
        st["synthetic_notes"] = len(notes)
        ctx.extra_tables[SYNTHETIC_NOTES_TABLE] = notes
        return rows
