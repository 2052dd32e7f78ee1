"""Test items from the warehouse: an instruction set's split (default test), checked against the patient split,
optionally a seeded subset, turned into chat messages the same way training does.

    items, data_version = load_items(con, spec.data)
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Mapping

import pandas as pd

from ehrforge import instructions
from ehrforge.errors import InputDataError
from ehrforge.llm.cache import prompt_hash

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ["instruction_id", "dataset", "task", "split", "subject_id", "context", "instruction", "answer",
                    "answer_type"]


def to_messages(row: Mapping[str, Any], system_prompt: str | None = None) -> list[dict]:
    """Prompt messages for one instruction row, without the answer: the prompt training used, byte for byte."""
    return instructions.to_messages(row, system_prompt, with_answer=False)


def _order_key(seed: int, instruction_id: str) -> str:
    return hashlib.sha256(f"{seed}:{instruction_id}".encode()).hexdigest()


def select_subset(df: pd.DataFrame, n_per_task: int | None, n: int | None, seed: int) -> pd.DataFrame:
    if n_per_task is None and n is None:
        return df
    df = df.assign(_k=[_order_key(seed, i) for i in df["instruction_id"]]).sort_values("_k")
    if n_per_task is not None:
        df = df.groupby("task", sort=False).head(n_per_task)
    if n is not None:
        df = df.head(n)
    return df.drop(columns="_k").sort_values("instruction_id")


def load_items(con, data) -> tuple[pd.DataFrame, str]:
    """-> (items with a `messages` column, data_version). `data` is a spec.DataSpec."""
    from ehrforge import warehouse

    warehouse.require_tables(con, [data.table], hint="generate the instruction set first: `make synthesize`")
    cols = warehouse.table_columns(con, data.table)
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise InputDataError(f"{data.table} lacks column(s) {missing}; it must follow the synthesis.instructions "
                             "layout (instruction_id, dataset, task, split, subject_id, context, instruction, "
                             "answer, answer_type, ...)")
    optional = [c for c in ("task_version", "hadm_id", "run_id", "system_prompt", "template_id") if c in cols]
    select = ", ".join(f"i.{c}" for c in REQUIRED_COLUMNS + optional)
    params: list[Any] = [data.dataset, data.split]
    where = "i.dataset = ? and i.split = ?"
    if data.tasks:
        where += " and i.task in (select unnest(?::varchar[]))"
        params.append(list(data.tasks))
    has_splits = warehouse.table_exists(con, data.splits_table)
    join = f"left join {data.splits_table} s on s.subject_id = i.subject_id" if has_splits else ""
    df = con.execute(
        f"select {select}, {'s.split' if has_splits else 'null'} as patient_split from {data.table} i {join} "
        f"where {where} order by i.instruction_id", params).df()
    if df.empty:
        avail = con.execute(f"select dataset, split, count(*) from {data.table} group by 1, 2 order by 1, 2").fetchall()
        raise InputDataError(
            f"no rows in {data.table} for dataset={data.dataset!r}, split={data.split!r}"
            f"{', tasks=' + str(data.tasks) if data.tasks else ''}; available (dataset, split, rows): {avail}. "
            "Fix data.dataset / data.split / data.tasks in the spec, or run `make synthesize`.")
    if df["instruction_id"].duplicated().any():
        dup = df.loc[df["instruction_id"].duplicated(), "instruction_id"].iloc[0]
        raise InputDataError(f"{data.table} holds instruction_id {dup!r} more than once for this dataset/split; "
                             "the instruction set is corrupt: regenerate it")
    if has_splits:
        # leakage guard: a test item must belong to a test patient
        bad = df[df["patient_split"].notna() & (df["patient_split"] != df["split"])]
        unknown = df[df["patient_split"].isna()]
        if len(bad) or len(unknown):
            ex = (bad if len(bad) else unknown).iloc[0]
            raise InputDataError(
                f"{len(bad)} item(s) disagree with their patient's split in {data.splits_table} and {len(unknown)} "
                f"belong to patients absent from it (e.g. {ex['instruction_id']}: row split {ex['split']!r}, "
                f"patient split {ex['patient_split']!r}); the instruction set is stale: re-run `make synthesize`")
    bad_types = sorted(set(df["answer_type"]) - {"text", "yes_no", "set", "number"})
    if bad_types:
        raise InputDataError(f"unknown answer_type(s) {bad_types} in {data.table}; expected text/yes_no/set/number")
    for col in ("context", "instruction", "answer"):
        df[col] = df[col].fillna("").astype(str)
    df = select_subset(df, data.subset.n_per_task, data.subset.n, data.subset.seed).reset_index(drop=True)
    # the data version is the content of exactly the items evaluated: runs compared or ranked together in the
    # results marts (same data_version) were scored on the same items with the same references
    digest = hashlib.sha256()
    for row in df[["instruction_id", "context", "instruction", "answer"]].itertuples(index=False):
        digest.update(json.dumps(list(row), default=str).encode())
    data_version = digest.hexdigest()[:16]
    df["messages"] = [to_messages(r, data.system_prompt) for r in df.to_dict("records")]
    df["prompt_hash"] = [prompt_hash(m) for m in df["messages"]]
    if "task_version" not in df.columns:
        df["task_version"] = None
    log.info("%d items from %s (dataset %s, split %s), data version %s", len(df), data.table, data.dataset,
             data.split, data_version)
    return df, data_version


def event_form_items(con, items: pd.DataFrame, data, artifact: str) -> pd.DataFrame:
    """The same items in the event form an LLemr artifact reads (ehrforge.llemr): same instruction ids, questions and
    references; the context is the record's events as placeholders, with the events on the user message."""
    from ehrforge import llemr

    spec = llemr.LlemrSpec(**llemr.read_meta(artifact)["spec"])
    lineage = dict(con.execute(f"select instruction_id, lineage from {data.table} where instruction_id in "
                               "(select unnest(?::varchar[]))", [items["instruction_id"].tolist()]).fetchall())
    rows = [{**r, "lineage": lineage.get(r["instruction_id"])} for r in items.drop(columns=["messages"]).to_dict("records")]
    forms = llemr.event_form(con, rows, spec)
    out = items.copy()
    out["messages"] = [llemr.event_messages(r, forms[r["instruction_id"]], data.system_prompt, with_answer=False)
                       for r in rows]
    out["prompt_hash"] = [prompt_hash(m) for m in out["messages"]]
    out["form"] = "events"
    log.info("%d items in the event form of %s (%d events in all)", len(out), artifact,
             sum(len(f["events"]["description_ids"]) for f in forms.values()))
    return out
