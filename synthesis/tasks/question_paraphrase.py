"""Question paraphrase through the LLM client: rephrase questions only, never answers, so exact match still scores.

Takes a deterministic sample of rows of `source_tasks` (run earlier in the same synthesis run), sends only the
question sentence (up to the first "?") to the generator, and re-attaches the original answer-format sentence
("Answer yes or no.", "Round to 2 decimals.") itself. A paraphrase is kept only if every time, date and number of
the original question is still in it, it differs from the original, it is a single question, and it does not
contain the answer when the original did not. The new row keeps the parent's context, answer and answer type;
its lineage names the parent row (recompute = the parent task's recompute on the parent lineage).
"""

from __future__ import annotations

import json
import re

from pydantic import Field

from ehrforge.llm.cache import prompt_hash
from synthesis.llm_io import OutputLog, Rejected, dumps, generator_model, run_requests
from synthesis.registry import Task, TaskConfig, instruction_id, recompute_from_parent, register_task, take_quota

SYSTEM = ("You rephrase questions. Rewrite the question with different wording and the same meaning. Keep every "
          "date, time, number and measurement name exactly as written. Do not answer it. Reply with the rewritten "
          "question only.")
# Worked examples sent as earlier chat turns: a 135M model given only the instruction answers the question instead
# (0 of 16 kept on the demo); shown two rephrasings it rephrases. Hand-written, no patient data.
SHOTS = [
    ("What was the value of Glucose (lab) at 2150-01-02 08:00?",
     "At 2150-01-02 08:00, what was the Glucose (lab) value?"),
    ("Will this hospital stay last longer than 3 days from admission?",
     "Is this admission going to exceed 3 days from admission?"),
]
_PROTECTED = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}|\d+(?:\.\d+)?")


class ParaphraseConfig(TaskConfig):
    quota: int = Field(16, ge=0)
    source_tasks: list[str] = ["template_qa", "risk_prediction"]
    max_new_tokens: int = Field(96, ge=8)


def split_question(instruction: str) -> tuple[str, str]:
    """('What was X at T?', ' Give it in mg/dL.'): the question and the format sentence after it."""
    i = instruction.find("?")
    if i == -1:
        return instruction.strip(), ""
    return instruction[: i + 1].strip(), instruction[i + 1:]


def check_paraphrase(original: str, text: str | None, answer: str, max_factor: float = 3.0) -> str:
    if text is None or not text.strip():
        raise Rejected("empty_output")
    para = text.strip().strip('"').strip()
    para = re.sub(r"^(rephrased|rewritten|paraphrased)?\s*(question)?\s*:\s*", "", para, flags=re.I).strip()
    if "\n" in para:
        raise Rejected("multiple_lines")
    if len(para) > max_factor * len(original) + 40:
        raise Rejected("too_long")
    if not para.endswith("?") or para.count("?") != 1:
        raise Rejected("not_one_question")
    if re.sub(r"\W+", " ", para.lower()).strip() == re.sub(r"\W+", " ", original.lower()).strip():
        raise Rejected("unchanged")
    missing = [p for p in _PROTECTED.findall(original) if p not in para]
    if missing:
        raise Rejected("lost_protected_span", ", ".join(missing[:3]))
    ans = answer.strip().lower()
    if ans not in ("yes", "no") and ans and ans in para.lower() and ans not in original.lower():
        raise Rejected("leaks_answer")
    return para


@register_task("question_paraphrase", version="1.1", source_marts=["synthesis.instructions"],
               config=ParaphraseConfig, uses_llm=True, depends_on=["template_qa", "risk_prediction",
                                                                   "decision_making"])
class QuestionParaphrase(Task):
    def build(self, ctx, cfg: ParaphraseConfig) -> list[dict]:
        from ehrforge.llm import Request

        parents = [r for t in cfg.source_tasks for r in ctx.rows_so_far.get(t, [])]
        parents = take_quota(parents, cfg.quota, ctx.seed, group_key="task")
        reqs, meta = [], []
        for p in parents:
            question, suffix = split_question(p["instruction"])
            msgs = [{"role": "system", "content": SYSTEM}]
            for q, a in SHOTS:
                msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            msgs.append({"role": "user", "content": question})
            iid = instruction_id(ctx.cfg.dataset, self.name, self.version, p["instruction_id"])
            reqs.append(Request(id=iid, messages=msgs, contains_phi=True, max_new_tokens=cfg.max_new_tokens,
                                seed=ctx.seed))
            meta.append((p, question, suffix, iid, msgs))
        responses = run_requests(ctx, self.name, reqs)
        log = OutputLog(ctx, self.name)
        rows = []
        for (p, question, suffix, iid, msgs), resp in zip(meta, responses):
            p_hash = prompt_hash(msgs)
            try:
                if resp.error:
                    raise Rejected("call_failed")
                para = check_paraphrase(question, resp.text, p["answer"])
            except Rejected as rej:
                log.add(iid, p["instruction_id"], p_hash, resp, "rejected", rej.reason)
                continue
            log.add(iid, p["instruction_id"], p_hash, resp, "accepted", instruction_id=iid)
            lineage = {"parent_instruction_id": p["instruction_id"], "parent_task": p["task"],
                       "parent_task_version": p["task_version"], "parent_template_id": p["template_id"],
                       "original_question": question, "parent_lineage": json.loads(p["lineage"]),
                       "cache_key": resp.cache_key}
            rows.append(dict(p, instruction_id=iid, task=self.name, task_version=self.version,
                             instruction=para + suffix, lineage=dumps(lineage), template_id=p["template_id"],
                             prompt_hash=p_hash, generator_model=generator_model(ctx), seed=ctx.seed,
                             _data=p["instruction_id"]))  # the parent's id carries its data version
        log.close()
        return rows

    def recompute(self, con, rows: list[dict]) -> list:
        return recompute_from_parent(con, rows)
