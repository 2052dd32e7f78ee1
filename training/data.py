"""Instruction data -> chat messages -> token ids with answer-only labels -> packed rows.

    msgs = to_messages(row)                                     # the one place rows become chat messages
    ex = tokenize_chat(tokenizer, msgs, max_len=2048)           # {"input_ids", "labels"}; labels = answer only
    packs = pack_examples([len(e["input_ids"]) for e in exs], capacity=8192, seed=0)
    batch = PackedCollator(pad_id)([[exs[i] for i in p] for p in packs[:1]][0])

No duckdb import at module level: the GPU benchmark imports this module on a machine without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ehrforge.errors import InputDataError
from ehrforge.instructions import CHAT_TEMPLATES, to_messages  # noqa: F401  (to_messages: the one row -> chat conversion)

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
SPLITS = ("train", "val", "test")



# ----------------------------------------------------------------------------------------------- messages


# ------------------------------------------------------------------------------------------------ loading


@dataclass
class InstructionData:
    """Rows of one instruction set, per split, already in chat form."""

    splits: dict[str, list[dict]]  # split -> [{"instruction_id", "subject_id", "task", "messages"}]
    data_version: str
    source: str

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}


def _version(records: Sequence[Mapping[str, Any]]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r.get("instruction_id"), r.get("split"), r["messages"]], sort_keys=True).encode())
    return h.hexdigest()[:16]


def _check_no_patient_in_two_splits(rows: list[dict]) -> None:
    seen: dict[Any, str] = {}
    for r in rows:
        sid = r.get("subject_id")
        if sid is None:
            continue
        prev = seen.setdefault(sid, r["split"])
        if prev != r["split"]:
            raise InputDataError(
                f"patient {sid} appears in split {prev!r} and {r['split']!r}: splits must be patient-level "
                "(rebuild the instruction set from marts.dim_splits)"
            )


def load_from_warehouse(con, cfg, splits: Sequence[str] = ("train", "val")) -> InstructionData:
    """Read `splits` of instruction set `cfg.dataset` (a DataConfig) and check each row's split against the
    patient's split in `cfg.splits_table`."""
    from ehrforge import warehouse

    warehouse.require_tables(con, [cfg.table], hint="generate the instruction set first: `make synthesize`")
    has_splits = warehouse.table_exists(con, cfg.splits_table)
    params: list[Any] = [cfg.dataset, list(splits)]
    where = "i.dataset = ? and i.split in (select unnest(?::varchar[]))"
    if cfg.tasks:
        where += " and i.task in (select unnest(?::varchar[]))"
        params.append(list(cfg.tasks))
    patient_split = "s.split" if has_splits else "null"
    join = f"left join {cfg.splits_table} s on s.subject_id = i.subject_id" if has_splits else ""
    df = con.execute(
        f"select i.instruction_id, i.task, i.split, i.subject_id, i.context, i.instruction, i.answer, "
        f"{patient_split} as patient_split from {cfg.table} i {join} where {where} order by i.instruction_id",
        params,
    ).df()
    if df.empty:
        available = [r[0] for r in con.execute(f"select distinct dataset from {cfg.table} order by 1").fetchall()]
        raise InputDataError(
            f"instruction set {cfg.dataset!r} has no rows in {cfg.table} for splits {list(splits)}; "
            f"available: {available}. Set data.dataset=<name>."
        )
    if has_splits:
        orphan = df[df["subject_id"].notna() & df["patient_split"].isna()]
        if len(orphan):
            raise InputDataError(
                f"{len(orphan)} instruction rows belong to patients missing from {cfg.splits_table} (e.g. subject "
                f"{int(orphan.iloc[0]['subject_id'])}); every row must join to its patient's split: rebuild the "
                "marts and the instruction set"
            )
        bad = df[df["patient_split"].notna() & (df["patient_split"] != df["split"])]
        if len(bad):
            raise InputDataError(
                f"{len(bad)} instruction rows disagree with their patient's split in {cfg.splits_table} "
                f"(e.g. {bad.iloc[0]['instruction_id']}: row split {bad.iloc[0]['split']!r}, patient split "
                f"{bad.iloc[0]['patient_split']!r}); the instruction set is stale: regenerate it"
            )
    records = []
    for row in df.to_dict("records"):
        records.append({
            "instruction_id": row["instruction_id"],
            "task": row["task"],
            "split": row["split"],
            "subject_id": None if row["subject_id"] is None or row["subject_id"] != row["subject_id"]
            else int(row["subject_id"]),  # null (NaN in pandas) for rows over public case reports
            "messages": to_messages(row, cfg.system_prompt),
        })
    return _finish(records, splits, source=f"{cfg.table}[dataset={cfg.dataset}]", cfg=cfg)


def load_from_export(path: str | Path, cfg, splits: Sequence[str] = ("train", "val")) -> InstructionData:
    """Read an export (parquet or JSONL) with a `messages` column and a `split` column."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise InputDataError(f"data.export_path {path} does not exist")
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True)
    missing = {"messages", "split"} - set(df.columns)
    if missing:
        raise InputDataError(f"export {path} lacks column(s) {sorted(missing)}; it needs `messages` and `split`")
    if "dataset" in df.columns:
        df = df[df["dataset"] == cfg.dataset]
    if cfg.tasks and "task" in df.columns:
        df = df[df["task"].isin(cfg.tasks)]
    df = df[df["split"].isin(list(splits))]
    if "instruction_id" in df.columns:  # the same order as the warehouse path, whatever the file's order
        df = df.sort_values("instruction_id", kind="stable")
    records = []
    for i, row in enumerate(df.to_dict("records")):
        msgs = row["messages"]
        msgs = json.loads(msgs) if isinstance(msgs, str) else [dict(m) for m in msgs]
        records.append({
            "instruction_id": row.get("instruction_id", f"row-{i}"),
            "task": row.get("task"),
            "split": row["split"],
            "subject_id": None if row.get("subject_id") is None else int(row["subject_id"]),
            "messages": [{"role": m["role"], "content": m["content"]} for m in msgs],
        })
    return _finish(records, splits, source=str(path), cfg=cfg)


def _finish(records: list[dict], splits: Sequence[str], source: str, cfg) -> InstructionData:
    _check_no_patient_in_two_splits(records)
    by_split: dict[str, list[dict]] = {s: [] for s in splits}
    for r in records:
        by_split[r["split"]].append(r)
    if "train" in by_split and not by_split["train"]:
        raise InputDataError(f"{source} has no train rows")
    limits = {"train": getattr(cfg, "max_train_examples", None), "val": getattr(cfg, "max_val_examples", None)}
    for split, limit in limits.items():
        if limit and split in by_split:
            by_split[split] = by_split[split][:limit]
    weights = getattr(cfg, "task_weights", None)
    if weights and "train" in by_split:
        by_split["train"] = reweight_tasks(by_split["train"], weights, source)
    return InstructionData(splits=by_split, data_version=_version(records), source=source)


def reweight_tasks(rows: list[dict], weights: Mapping[str, float], source: str = "the instruction set") -> list[dict]:
    """Train rows with each task's rows repeated `weights[task]` times (tasks not named: once).

    The whole part of a weight repeats every row; the fractional part adds one more copy of the rows whose
    instruction_id hashes below it, so the same rows are picked in every run and on every rank.
    """
    present = {r.get("task") for r in rows}
    unknown = sorted(set(weights) - present)
    if unknown:
        raise InputDataError(f"data.task_weights names task(s) {unknown} that {source} has no train rows of; "
                             f"its tasks: {sorted(t for t in present if t)}")
    out: list[dict] = []
    for r in rows:
        w = float(weights.get(r.get("task"), 1.0))
        n = int(w)
        frac = w - n
        if frac > 0:
            u = int(hashlib.sha256(f"task_weight:{r['instruction_id']}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
            n += u < frac
        out.extend([r] * n)
    if not out:
        raise InputDataError(f"data.task_weights {dict(weights)} leave no train rows of {source}")
    return out


def load_train_notes(con, cpt_cfg, splits_table: str = "marts.dim_splits") -> list[dict]:
    """Note text of train-split patients only (never val/test patients), ordered by note_id."""
    from ehrforge import warehouse

    warehouse.require_tables(con, [cpt_cfg.notes_table, splits_table])
    limit = f"limit {int(cpt_cfg.max_notes)}" if cpt_cfg.max_notes else ""
    rows = con.execute(
        f"select n.note_id, n.subject_id, n.clean_text from {cpt_cfg.notes_table} n "
        f"join {splits_table} s on s.subject_id = n.subject_id "
        f"where s.split = 'train' and n.clean_text is not null and length(n.clean_text) > 0 "
        f"order by n.note_id {limit}"
    ).fetchall()
    if not rows:
        raise InputDataError(f"no note text of train-split patients in {cpt_cfg.notes_table}")
    return [{"note_id": r[0], "subject_id": int(r[1]), "text": r[2]} for r in rows]


# ------------------------------------------------------------------------------------------- tokenization


def ensure_chat_template(tokenizer, name: str | None) -> None:
    """Use a named template (base models) or keep the tokenizer's; fail clearly if there is none."""
    if name:
        tokenizer.chat_template = CHAT_TEMPLATES[name]
    if not getattr(tokenizer, "chat_template", None):
        raise InputDataError(
            "the tokenizer has no chat template (a base model?): set model.chat_template=chatml or llama3"
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def tokenize_chat(tokenizer, messages: list[dict], max_len: int | None = None) -> dict | None:
    """Token ids and labels for one conversation; labels are IGNORE_INDEX everywhere but the answer tokens.

    Templates with {% generation %} give the mask directly. Others (most hub templates) are handled by the
    prefix rule: everything up to the generation prompt is context, the rest of the conversation is answer.
    Returns None when the conversation is longer than `max_len` (it is dropped, never silently cut).
    """
    template = tokenizer.chat_template or ""
    if "{% generation %}" in template or "{%- generation %}" in template:
        out = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids = list(out["input_ids"])
        mask = list(out["assistant_masks"])
    else:
        ids = list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
        prompt = list(tokenizer.apply_chat_template(
            messages[:-1], tokenize=True, return_dict=True, add_generation_prompt=True
        )["input_ids"])
        if ids[: len(prompt)] != prompt:
            raise InputDataError("the chat template does not render the prompt as a prefix of the conversation; "
                                 "set model.chat_template to a named template")
        end = len(ids)
        # Template text after the end-of-turn token (e.g. a newline) is formatting, not answer.
        eos = tokenizer.eos_token_id
        if eos is not None and eos in ids[len(prompt):]:
            end = ids.index(eos, len(prompt)) + 1
        mask = [0] * len(prompt) + [1] * (end - len(prompt)) + [0] * (len(ids) - end)
    if max_len is not None and len(ids) > max_len:
        return None
    labels = [t if m else IGNORE_INDEX for t, m in zip(ids, mask)]
    if not any(m for m in mask):
        raise InputDataError("no answer tokens in a conversation: does the last message have role 'assistant'?")
    return {"input_ids": ids, "labels": labels}


def tokenize_split(tokenizer, records: list[dict], max_len: int) -> tuple[list[dict], int]:
    """Tokenize a split; returns (examples, number dropped for being longer than max_len)."""
    examples, dropped = [], 0
    for r in records:
        ex = tokenize_chat(tokenizer, r["messages"], max_len)
        if ex is None:
            dropped += 1
        else:
            examples.append(ex)
    if dropped:
        log.warning("dropped %d of %d conversations longer than data.max_seq_len=%d", dropped, len(records), max_len)
    return examples, dropped


def note_blocks(tokenizer, notes: list[dict], block_size: int) -> list[dict]:
    """Causal-LM pieces of note text: each note + EOS, cut into pieces of at most `block_size` tokens.
    Pieces are packed later with position_ids resets, so no note attends to another."""
    eos = tokenizer.eos_token_id
    out = []
    for n in notes:
        ids = tokenizer(n["text"], add_special_tokens=False)["input_ids"] + [eos]
        for i in range(0, len(ids), block_size):
            piece = ids[i : i + block_size]
            if len(piece) >= 2:
                out.append({"input_ids": piece, "labels": list(piece)})
    return out


# ---------------------------------------------------------------------------------------------- packing


def pack_examples(lengths: Sequence[int], capacity: int, seed: int = 0) -> list[list[int]]:
    """Group example indices into packs of total length <= capacity (first-fit decreasing).

    Deterministic for a seed: the same data gives the same packs, so a resumed run sees the same order.
    Packs come back shuffled (seeded) so that similar-length examples are not all in one part of an epoch.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    packs: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"example {i} has {n} tokens > pack capacity {capacity}")
        # First fit over packs sorted by creation; lengths descend, so this is FFD.
        for j, r in enumerate(room):
            if r >= n:
                packs[j].append(i)
                room[j] -= n
                break
        else:
            packs.append([i])
            room.append(capacity - n)
    rng = random.Random(seed)
    rng.shuffle(packs)
    return packs


class PackedDataset:
    """A map-style dataset whose items are packs (lists of tokenized examples)."""

    def __init__(self, examples: list[dict], capacity: int, seed: int = 0):
        self.examples = examples
        self.packs = pack_examples([len(e["input_ids"]) for e in examples], capacity, seed)

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, i: int) -> list[dict]:
        return [self.examples[j] for j in self.packs[i]]

    def n_tokens(self) -> int:
        return sum(len(e["input_ids"]) for e in self.examples)


class PackedCollator:
    """Concatenate the examples of each pack into one row with per-document position_ids (0, 1, ... per doc).

    With no attention_mask and reset position_ids, transformers builds a block-diagonal causal mask (sdpa,
    eager, flex) or uses varlen kernels (flash-attention), so documents never attend to each other. The first
    token of every document gets label IGNORE_INDEX so no document is predicted from the one before it.
    Several packs in a batch are right-padded (pad positions restart at 0 and carry no labels).
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 1):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, batch: list) -> dict:
        import torch

        if batch and isinstance(batch[0], dict):  # a single pack given as a list of examples
            batch = [batch]
        rows = []
        for pack in batch:
            ids, labels, pos = [], [], []
            for ex in pack:
                n = len(ex["input_ids"])
                ids += ex["input_ids"]
                labels += [IGNORE_INDEX] + list(ex["labels"][1:])
                pos += list(range(n))
            rows.append((ids, labels, pos))
        width = max(len(r[0]) for r in rows)
        m = self.pad_to_multiple_of
        width = (width + m - 1) // m * m
        out_ids, out_labels, out_pos = [], [], []
        for ids, labels, pos in rows:
            pad = width - len(ids)
            out_ids.append(ids + [self.pad_token_id] * pad)
            out_labels.append(labels + [IGNORE_INDEX] * pad)
            out_pos.append(pos + list(range(pad)))
        n_real = sum(len(r[0]) for r in rows)
        return {
            "input_ids": torch.tensor(out_ids, dtype=torch.long),
            "labels": torch.tensor(out_labels, dtype=torch.long),
            "position_ids": torch.tensor(out_pos, dtype=torch.long),
            "n_real_tokens": torch.tensor(n_real, dtype=torch.long),
        }


class PaddedCollator:
    """Plain per-batch right padding with an attention mask (the unpacked baseline)."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 1):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, batch: list[dict]) -> dict:
        import torch

        m = self.pad_to_multiple_of
        width = max(len(e["input_ids"]) for e in batch)
        width = (width + m - 1) // m * m
        ids, labels, attn = [], [], []
        for e in batch:
            pad = width - len(e["input_ids"])
            ids.append(list(e["input_ids"]) + [self.pad_token_id] * pad)
            labels.append(list(e["labels"]) + [IGNORE_INDEX] * pad)
            attn.append([1] * len(e["input_ids"]) + [0] * pad)
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "attention_mask": torch.tensor(attn, dtype=torch.long),
            "n_real_tokens": torch.tensor(sum(len(e["input_ids"]) for e in batch), dtype=torch.long),
        }


class ListDataset:
    """Examples as a map-style dataset with a `length` list for length-grouped sampling."""

    def __init__(self, examples: list[dict]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return self.examples[i]
