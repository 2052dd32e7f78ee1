"""Run a jury of LLM judges over (question, context, candidate, reference) items, cancelling position bias.

Each judge sees the candidate and the reference as anonymous "Response A" / "Response B", in BOTH orders (or,
with both_orders=False, in an order drawn per item from a hash, so that over a task the candidate is first about
half the time). A malformed reply is re-asked up to `max_retries` times with the parse error appended to the
conversation (a new request, so the cache never replays the bad answer). Per item:

  judge_score     mean over judges and orders of the candidate's mean criterion score, mapped 1..5 -> 0..1
  judge_win_rate  mean over judges and orders of 1 (candidate preferred), 0.5 (tie), 0 (reference preferred)

plus a details dict (every judgement, parse failures, and whether each judge's preference survived the swap).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from evaluation.judges.parser import JudgeParseError, parse_judgement
from evaluation.judges.rubric import Rubric

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JudgeItem:
    id: str
    question: str
    context: str
    candidate: str
    reference: str


def _orders(item_id: str, both: bool) -> list[str]:
    if both:
        return ["ref_first", "cand_first"]
    h = int(hashlib.sha256(item_id.encode()).hexdigest()[:8], 16)
    return ["cand_first" if h % 2 else "ref_first"]


def _messages(rubric: Rubric, it: JudgeItem, order: str) -> list[dict]:
    a, b = (it.reference, it.candidate) if order == "ref_first" else (it.candidate, it.reference)
    return rubric.render(it.question, it.context, a, b)


def _fix_message(error: str, rubric: Rubric) -> dict:
    return {"role": "user", "content": (
        f"Your reply could not be used: {error}. Reply again with only the JSON object, exactly in this shape "
        f"(integers 1-5):\n{rubric.json_shape()}")}


CHOICES = ["A", "B", "tie"]


def judge_once_choice(items: list[JudgeItem], rubric: Rubric, name: str, config, both_orders: bool,
                      run_batch_kwargs: dict) -> dict[tuple[str, str], dict]:
    """output: choice -- the verdict is the likeliest of A / B / tie by choice scoring, so it always parses; there are
    no per-criterion scores (judge_score stays empty, judge_win_rate is filled)."""
    from ehrforge.llm import Request, score_choices

    keys = [(it.id, o) for it in items for o in _orders(it.id, both_orders)]
    by_id = {it.id: it for it in items}
    reqs = []
    for iid, order in keys:
        it = by_id[iid]
        a, b = (it.reference, it.candidate) if order == "ref_first" else (it.candidate, it.reference)
        reqs.append(Request(id=f"judge:{name}:{iid}:{order}:choice",
                            messages=rubric.render_choice(it.question, it.context, a, b)))
    out: dict[tuple[str, str], dict] = {}
    for key, resp in zip(keys, score_choices(reqs, CHOICES, config, **run_batch_kwargs)):
        if resp.error or not resp.choice_probs:
            out[key] = {"error": f"call failed: {resp.error}", "attempts": 1, "raw": None}
            continue
        probs = resp.choice_probs
        out[key] = {"parsed": {"preferred": max(CHOICES, key=lambda c: probs.get(c, 0.0)), "probs": probs},
                    "attempts": 1, "raw": resp.text}
    return out


def judge_once(items: list[JudgeItem], rubric: Rubric, name: str, config, both_orders: bool, max_retries: int,
               max_new_tokens: int, run_batch_kwargs: dict) -> dict[tuple[str, str], dict]:
    """One judge over all items and orders -> {(item_id, order): {"parsed"|"error", "attempts", "raw"}}."""
    from ehrforge.llm import Request, run_batch

    criteria = list(rubric.criteria)
    pending = {(it.id, o): _messages(rubric, it, o) for it in items for o in _orders(it.id, both_orders)}
    out: dict[tuple[str, str], dict] = {}
    for attempt in range(max_retries + 1):
        if not pending:
            break
        keys = list(pending)
        reqs = [Request(id=f"judge:{name}:{iid}:{order}:{attempt}", messages=pending[(iid, order)],
                        max_new_tokens=max_new_tokens) for iid, order in keys]
        responses = run_batch(reqs, config, **run_batch_kwargs)
        nxt = {}
        for key, resp in zip(keys, responses):
            if resp.error:
                out[key] = {"error": f"call failed: {resp.error}", "attempts": attempt + 1, "raw": None}
                continue
            try:
                out[key] = {"parsed": parse_judgement(resp.text, criteria), "attempts": attempt + 1,
                            "raw": resp.text}
            except JudgeParseError as exc:
                out[key] = {"error": str(exc), "attempts": attempt + 1, "raw": (resp.text or "")[:500]}
                nxt[key] = pending[key] + [{"role": "assistant", "content": resp.text or ""},
                                           _fix_message(str(exc), rubric)]
        pending = nxt
    n_bad = sum("error" in v for v in out.values())
    if n_bad:
        log.warning("judge %s: %d of %d judgements unusable after %d attempt(s)", name, n_bad, len(out),
                    max_retries + 1)
    return out


def combine(item_id: str, per_judge: dict[str, dict[tuple[str, str], dict]], rubric: Rubric) -> dict:
    """Per-item judge_score, judge_win_rate and details from every judge's judgements of that item."""
    scores, wins, details = [], [], {}
    for judge, res in per_judge.items():
        prefs = {}
        for (iid, order), r in res.items():
            if iid != item_id:
                continue
            entry = {k: v for k, v in r.items() if k != "raw" or "error" in r}
            details.setdefault(judge, {})[order] = entry
            if "parsed" not in r:
                continue
            p = r["parsed"]
            cand = "B" if order == "ref_first" else "A"
            crit = p.get(cand)
            if crit:  # output: choice has a verdict only
                scores.append(sum((v - 1) / 4 for v in crit.values()) / len(crit))
            pref = "tie" if p["preferred"] == "tie" else ("candidate" if p["preferred"] == cand else "reference")
            wins.append({"candidate": 1.0, "tie": 0.5, "reference": 0.0}[pref])
            prefs[order] = pref
        if len(prefs) == 2:
            details[judge]["position_consistent"] = prefs["ref_first"] == prefs["cand_first"]
    return {
        "judge_score": sum(scores) / len(scores) if scores else None,
        "judge_win_rate": sum(wins) / len(wins) if wins else None,
        "details": {"rubric": rubric.name, "rubric_version": rubric.version, "judges": details},
    }


def judge_items(items: list[JudgeItem], rubric: Rubric, jury: list[tuple[str, object]], both_orders: bool = True,
                max_retries: int = 2, max_new_tokens: int = 256, output: str = "json",
                **run_batch_kwargs) -> dict[str, dict]:
    """-> {item_id: {"judge_score", "judge_win_rate", "details"}} over a jury of (name, LLMConfig).
    output: json (per-criterion scores + verdict, generated and parsed) or choice (verdict by choice scoring)."""
    if output == "choice":
        per_judge = {name: judge_once_choice(items, rubric, name, cfg, both_orders, run_batch_kwargs)
                     for name, cfg in jury}
    else:
        per_judge = {name: judge_once(items, rubric, name, cfg, both_orders, max_retries, max_new_tokens,
                                      run_batch_kwargs) for name, cfg in jury}
    return {it.id: combine(it.id, per_judge, rubric) for it in items}


def judge_reliability(details: list[dict]) -> dict:
    """How usable a jury's verdicts were, from the per-item `details` of `combine`: judgements asked, parsed
    (after retries), and, over items judged in both orders, how often the preference survived the swap."""
    n_asked = n_parsed = n_pairs = n_consistent = 0
    for d in details:
        for judge in (d or {}).get("judges", {}).values():
            for order in ("ref_first", "cand_first"):
                if order in judge:
                    n_asked += 1
                    n_parsed += "parsed" in judge[order]
            if "position_consistent" in judge:
                n_pairs += 1
                n_consistent += bool(judge["position_consistent"])
    return {"n_judgements": n_asked, "n_parsed": n_parsed,
            "parse_rate": n_parsed / n_asked if n_asked else None,
            "n_both_orders_parsed": n_pairs, "n_position_consistent": n_consistent,
            "position_consistency": n_consistent / n_pairs if n_pairs else None}
