"""The "most common answer per template" baseline: a model that never reads the record.

    models:
      - {name: most-common-answer, kind: baseline}

For each test item it answers the answer seen most often in the TRAIN split of the same instruction set for the same
(task, template_id) (ties: the alphabetically first), and for yes/no items P(yes) = the share of "yes" among those
training answers. A fine-tune that only learned the answer format and the usual values scores about this; beating it
means reading the answer from the record. Scored with the same metrics as every other model, so it sits in the
leaderboard next to them.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from evaluation.metrics._text import yes_no

BASELINE_NAME = "most_common_answer_per_template"


def train_answer_table(con, data) -> dict[tuple[str, str], tuple[str, float | None, int]]:
    """(task, template_id) -> (most common train answer, share of yes among them or None, n train rows)."""
    rows = con.execute(
        f"select task, coalesce(template_id, ''), answer, answer_type from {data.table} "
        "where dataset = ? and split = 'train' and answer is not null", [data.dataset]).fetchall()
    by: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for task, tid, answer, atype in rows:
        by.setdefault((task, tid), []).append((str(answer), atype))
    out = {}
    for key, answers in by.items():
        counts = Counter(a for a, _ in answers)
        top = max(sorted(counts), key=lambda a: counts[a])
        p_yes = None
        if answers[0][1] == "yes_no":
            labels = [yes_no(a) for a, _ in answers]
            labels = [x for x in labels if x is not None]
            p_yes = sum(labels) / len(labels) if labels else None
        out[key] = (top, p_yes, len(answers))
    return out


def baseline_responses(con, data, items: pd.DataFrame) -> list:
    """One Response per item, in item order (error where the template has no training rows)."""
    from ehrforge.llm import Response

    table = train_answer_table(con, data)
    task_level: dict[str, tuple[str, float | None, int]] = {}
    for (task, _tid), v in table.items():  # fallback for templates unseen in train: the task's biggest template
        if task not in task_level or v[2] > task_level[task][2]:
            task_level[task] = v
    tids = items["template_id"] if "template_id" in items.columns else pd.Series([""] * len(items))
    out = []
    for iid, task, tid in zip(items["instruction_id"], items["task"], tids):
        hit = table.get((task, "" if tid is None or pd.isna(tid) else str(tid))) or task_level.get(task)
        if hit is None:
            out.append(Response(request_id=iid, error=f"no train rows for task {task}"))
            continue
        answer, p_yes, _ = hit
        choice = None if p_yes is None else {"yes": _log(p_yes), "no": _log(1 - p_yes)}
        out.append(Response(request_id=iid, text=answer, choice_logprobs=choice, cache_key=BASELINE_NAME))
    return out


def _log(p: float) -> float:
    import math

    return math.log(p) if p > 0 else float("-inf")
