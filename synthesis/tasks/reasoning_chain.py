"""Reasoning chains over the evidence graph (EHR-R1's second stage): an LLM explains a verifiable answer.

    make synthesize CONFIG=synthesis/configs/demo_reasoning.yaml     (python -m synthesis.cli --config ...)

For a deterministic sample of template QA / risk prediction / decision making rows (run earlier in the same synthesis
run, splits `cfg.splits`), the prompt holds the parent's record and question plus the evidence-graph links among the
record's entities: the entities of the admission (marts.fct_entity_events) inside the rendered window whose label the
record shows, and the pairs of marts.fct_evidence_pairs (learnt from train patients only) between them, strongest
lift first. The generator reasons and ends with a line `Answer: ...`. The final answer is checked with the one
answer verifier (ehrforge.answers.verify, the same function evaluation scores with); a chain is rejected with a
reason: call_failed, empty_output, no_final_answer, no_reasoning, too_long, template_leak, garbage_characters,
wrong_answer. An accepted chain becomes an SFT row: the parent's context and question, and as answer the chain as a
thinking section followed by the parent's (gold) answer, `<think>...</think>\\n<answer>`, which training renders
through the chat template like any assistant turn. Its lineage names the parent row and the graph rows used
(entity ids and pair ids).

With `reveal_answer: true` the prompt also states the gold answer (STaR's "rationalization"); by default it does not,
so only chains that reach the answer themselves are kept (rejection sampling).
"""

from __future__ import annotations

import json
import re
from typing import Literal

import pandas as pd
from pydantic import Field

from ehrforge.answers import FINAL_ANSWER_PREFIX, split_final_answer, verify, with_thinking
from ehrforge.llm.cache import prompt_hash
from synthesis.llm_io import OutputLog, Rejected, dumps, generator_model, run_requests
from synthesis.registry import (Task, TaskConfig, instruction_id, recompute_from_parent, register_task, stable_hash,
                                take_quota)

SYSTEM = ("You are a careful clinical reasoning assistant. Read the patient record, the question and the links "
          "between findings. Reason step by step in a few short sentences, naming the findings you use. Then write "
          f"the final answer alone on the last line, as `{FINAL_ANSWER_PREFIX} <answer>`.")
# A worked example sent as earlier chat turns (hand-written, fictional patient): small models copy the form of a
# shown answer far more reliably than they follow a described one.
SHOT = (
    "# Hospital admission record\n- patient: F, 71 years\n\n## Lab results [2150-03-01 06:00]\n"
    "| item | value | unit | reference | flag |\n|---|---|---|---|---|\n| Potassium | 6.1 | mEq/L | 3.3-5.1 | abnormal |\n"
    "| Creatinine | 3.4 | mg/dL | 0.4-1.1 | abnormal |\n\n"
    "## Links between findings in this record (co-occurrence in training admissions)\n"
    "- Creatinine (abnormal_lab) -> Potassium (abnormal_lab): confidence 0.62, lift 2.1\n\n"
    "Question: Was the Potassium (lab) value at 2150-03-01 06:00 abnormal? Answer yes or no.",
    "The potassium at 2150-03-01 06:00 was 6.1 mEq/L. The reference range is 3.3-5.1, so it is above the range and "
    "flagged abnormal. The high creatinine fits: kidney failure often comes with high potassium.\n"
    f"{FINAL_ANSWER_PREFIX} yes",
)
_LEAK = re.compile(r"<\|im_(start|end)\|>|<\|(start|end)_header_id\|>|\{\{|\}\}")


class ReasoningConfig(TaskConfig):
    quota: int = Field(24, ge=0, description="parent rows sent to the generator (one prompt each)")
    source_tasks: list[Literal["template_qa", "risk_prediction", "decision_making"]] = [
        "template_qa", "risk_prediction", "decision_making"]
    splits: list[Literal["train", "val", "test"]] = Field(
        ["train", "val"], description="splits of the parents; test items stay plain for evaluation")
    max_links: int = Field(12, ge=0, description="most graph links shown (highest lift first)")
    reveal_answer: bool = False
    max_new_tokens: int = Field(192, ge=16)
    temperature: float | None = Field(None, ge=0, description="None: the generator config's (greedy by default)")
    min_reasoning_words: int = Field(5, ge=0)
    max_reasoning_chars: int = Field(3000, ge=100)


def graph_section(links: list[dict]) -> str:
    lines = ["## Links between findings in this record (co-occurrence in training admissions)"]
    if not links:
        lines.append("- none of this record's findings are linked in the graph")
    for lk in links:
        lines.append(f"- {lk['antecedent_label']} ({lk['antecedent_type']}) -> {lk['consequent_label']} "
                     f"({lk['consequent_type']}): confidence {lk['confidence']:.2f}, lift {lk['lift']:.1f}")
    return "\n".join(lines)


def check_chain(text: str | None, gold: str, answer_type: str, cfg: ReasoningConfig) -> tuple[str, str]:
    """(reasoning, final answer) of an acceptable chain, else Rejected with the reason."""
    if text is None or not text.strip():
        raise Rejected("empty_output")
    reasoning, final = split_final_answer(text)
    if final is None:
        raise Rejected("no_final_answer")
    if len(reasoning.split()) < cfg.min_reasoning_words:
        raise Rejected("no_reasoning", f"{len(reasoning.split())} words")
    if len(reasoning) > cfg.max_reasoning_chars:
        raise Rejected("too_long", f"{len(reasoning)} chars")
    if _LEAK.search(text):
        raise Rejected("template_leak")
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in text) / max(1, len(text))
    if printable < 0.98:
        raise Rejected("garbage_characters")
    verdict = verify(final, gold, answer_type)
    if not verdict.is_correct:
        raise Rejected("wrong_answer", f"{final[:60]!r} vs gold {gold[:60]!r} ({verdict.kind} {verdict.score})")
    return reasoning, final


@register_task("reasoning_chain", version="1.0",
               source_marts=["synthesis.instructions", "marts.fct_entity_events", "marts.dim_evidence_nodes",
                             "marts.fct_evidence_pairs"],
               config=ReasoningConfig, uses_llm=True, depends_on=["template_qa", "risk_prediction", "decision_making"])
class ReasoningChain(Task):
    def build(self, ctx, cfg: ReasoningConfig) -> list[dict]:
        from ehrforge.llm import Request

        parents = [r for t in cfg.source_tasks for r in ctx.rows_so_far.get(t, []) if r["split"] in cfg.splits]
        parents = take_quota(parents, cfg.quota, ctx.seed, group_key="task")
        if not parents:
            ctx.stats.setdefault(self.name, {})["no_rows_reason"] = (
                f"no rows of {cfg.source_tasks} in splits {cfg.splits} (enable those tasks in the same config)")
            return []
        entities = self._record_entities(ctx, parents)
        pairs = self._pairs(ctx, {e for ents in entities.values() for e in ents})
        reqs, meta = [], []
        for p in parents:
            ents = entities.get(p["instruction_id"], {})
            links = sorted((lk for a in ents for lk in pairs.get(a, []) if lk["consequent_id"] in ents),
                           key=lambda lk: (-lk["lift"], lk["pair_id"]))[: cfg.max_links]
            user = f"{p['context'].strip()}\n\n{graph_section(links)}\n\nQuestion: {p['instruction'].strip()}"
            if cfg.reveal_answer:
                user += f"\nThe correct answer is: {p['answer']}. Explain how the record leads to it."
            user += f"\nReason step by step, then end with the line `{FINAL_ANSWER_PREFIX} ...`."
            msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": SHOT[0]},
                    {"role": "assistant", "content": SHOT[1]}, {"role": "user", "content": user}]
            iid = instruction_id(ctx.cfg.dataset, self.name, self.version, p["instruction_id"], cfg.reveal_answer)
            reqs.append(Request(id=iid, messages=msgs, contains_phi=True, max_new_tokens=cfg.max_new_tokens,
                                temperature=cfg.temperature, seed=ctx.seed))
            meta.append((p, iid, msgs, sorted(ents), [lk["pair_id"] for lk in links]))
        responses = run_requests(ctx, self.name, reqs)
        log = OutputLog(ctx, self.name)
        rows = []
        for (p, iid, msgs, entity_ids, pair_ids), resp in zip(meta, responses):
            p_hash = prompt_hash(msgs)
            try:
                if resp.error:
                    raise Rejected("call_failed")
                reasoning, final = check_chain(resp.text, p["answer"], p["answer_type"], cfg)
            except Rejected as rej:
                log.add(iid, p["instruction_id"], p_hash, resp, "rejected", rej.reason)
                continue
            log.add(iid, p["instruction_id"], p_hash, resp, "accepted", instruction_id=iid)
            lineage = {"parent_instruction_id": p["instruction_id"], "parent_task": p["task"],
                       "parent_task_version": p["task_version"], "parent_template_id": p["template_id"],
                       "parent_lineage": json.loads(p["lineage"]), "cache_key": resp.cache_key,
                       "graph": {"source_marts": self.source_marts[1:], "entity_ids": entity_ids,
                                 "pair_ids": pair_ids},
                       "final_answer": final, "reveal_answer": cfg.reveal_answer}
            rows.append(dict(p, instruction_id=iid, task=self.name, task_version=self.version,
                             answer=with_thinking(reasoning, p["answer"]), lineage=dumps(lineage),
                             prompt_hash=p_hash, generator_model=generator_model(ctx), seed=ctx.seed,
                             _data=stable_hash(p["instruction_id"], pair_ids, entity_ids)))
        log.close()
        return rows

    @staticmethod
    def _record_entities(ctx, parents: list[dict]) -> dict[str, dict[str, str]]:
        """parent id -> {entity_id: label} of the graph nodes the parent's record shows: entity events of the
        admission inside the rendered window (after its truncated part, before its end: never at or past a risk
        question's prediction time) whose label appears in the context text."""
        windows = []
        for p in parents:
            win = json.loads(p["lineage"]).get("context") or {}
            if p["hadm_id"] is None or not win.get("window_start") or not win.get("window_end"):
                continue
            # what the record shows: after the truncated part (visible_after) and before the window's end
            start = max(win["window_start"], win.get("visible_after") or win["window_start"])
            windows.append((p["instruction_id"], int(p["hadm_id"]), start, win["window_end"],
                            win.get("visible_after") is not None))
        if not windows:
            return {}
        ctx.con.register("_reasoning_windows", pd.DataFrame(
            windows, columns=["parent_id", "hadm_id", "window_start", "window_end", "is_truncated"]))
        try:
            got = ctx.con.execute(
                "select distinct w.parent_id, e.entity_id, e.entity_label from _reasoning_windows w "
                "join marts.fct_entity_events e on e.hadm_id = w.hadm_id "
                "and (e.event_time > w.window_start::timestamp or (not w.is_truncated "
                "and e.event_time = w.window_start::timestamp)) and e.event_time < w.window_end::timestamp "
                "join marts.dim_evidence_nodes n on n.entity_id = e.entity_id "
                "order by w.parent_id, e.entity_id").fetchall()
        finally:
            ctx.con.unregister("_reasoning_windows")
        contexts = {p["instruction_id"]: p["context"].lower() for p in parents}
        out: dict[str, dict[str, str]] = {}
        for parent_id, entity_id, label in got:
            if label.lower() in contexts[parent_id]:
                out.setdefault(parent_id, {})[entity_id] = label
        return out

    @staticmethod
    def _pairs(ctx, entity_ids: set[str]) -> dict[str, list[dict]]:
        """antecedent id -> its pairs (marts.fct_evidence_pairs) whose both ends are among `entity_ids`."""
        if not entity_ids:
            return {}
        ids = sorted(entity_ids)
        df = ctx.con.execute(
            "select pair_id, antecedent_id, antecedent_type, antecedent_label, consequent_id, consequent_type, "
            "consequent_label, confidence, lift from marts.fct_evidence_pairs "
            "where antecedent_id in (select unnest(?::varchar[])) and consequent_id in (select unnest(?::varchar[]))",
            [ids, ids]).df()
        out: dict[str, list[dict]] = {}
        for r in df.to_dict("records"):
            out.setdefault(r["antecedent_id"], []).append(r)
        return out

    def recompute(self, con, rows: list[dict]) -> list:
        """The parent task's answer recomputed from the parent lineage (the row's answer after its thinking section)."""
        return recompute_from_parent(con, rows)
