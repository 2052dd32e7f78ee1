"""Export one dataset of synthesis.instructions to JSONL + parquet per split, in chat-messages form, with a card.

    python -m synthesis.export --dataset demo [--out runs/datasets/demo]

Writes `<out>/{train,val,test}.jsonl` and `.parquet` (columns: instruction_id, task, task_version, split,
subject_id, hadm_id, answer_type, messages, context, instruction, answer, lineage, run_id) and `README.md`, an
HF-style dataset card with counts per task and split. `datasets.load_dataset("json", data_files={...})` and
`load_dataset("parquet", ...)` read them; `messages` comes from ehrforge.instructions.to_messages (the one row -> chat conversion).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from ehrforge import warehouse
from ehrforge.atomic import atomic_dir
from ehrforge.errors import ConfigError, EhrforgeError, InputDataError, exit_code
from ehrforge.instructions import to_messages
from ehrforge.paths import runs_dir
from synthesis import INSTRUCTIONS_TABLE, NOTE_REPORT_TABLE

SPLITS = ("train", "val", "test")
EXPORT_COLUMNS = ["instruction_id", "dataset", "task", "task_version", "split", "subject_id", "hadm_id",
                  "answer_type", "template_id", "messages", "context", "instruction", "answer", "lineage",
                  "generator_model", "run_id"]


def export_dataset(con, dataset: str, out_dir: str | Path | None = None, stats: dict | None = None) -> dict:
    out = Path(out_dir) if out_dir else runs_dir() / "datasets" / dataset
    df = con.execute(f"select * from {INSTRUCTIONS_TABLE} where dataset = ? order by split, task, instruction_id",
                     [dataset]).df()
    if df.empty:
        raise InputDataError(f"no rows for dataset {dataset!r} in {INSTRUCTIONS_TABLE}; run `make synthesize` first")
    df["messages"] = [to_messages(r) for r in df.to_dict("records")]
    df["hadm_id"] = df["hadm_id"].astype("Int64")
    df["subject_id"] = df["subject_id"].astype("Int64")  # null for rows over public case reports
    _check_replaceable(out)
    files = {}
    # The whole export (every split + the card) is written into a temporary folder and renamed when complete: a
    # kill never leaves a mix of new and old splits, and a reader never sees a half-written file.
    with atomic_dir(out, {"artifact": "export", "dataset": dataset}) as tmp:
        for split in SPLITS:
            part = df[df["split"] == split][EXPORT_COLUMNS]
            with (tmp / f"{split}.jsonl").open("w") as fh:
                for rec in part.to_dict("records"):
                    rec["hadm_id"] = None if pd.isna(rec["hadm_id"]) else int(rec["hadm_id"])
                    rec["subject_id"] = None if pd.isna(rec["subject_id"]) else int(rec["subject_id"])
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            part.to_parquet(tmp / f"{split}.parquet", index=False)
            files[split] = {"jsonl": str(out / f"{split}.jsonl"), "parquet": str(out / f"{split}.parquet"),
                            "n": len(part)}
        report = None
        if warehouse.table_exists(con, NOTE_REPORT_TABLE):
            report = con.execute(f"select scope, metric, value from {NOTE_REPORT_TABLE} where dataset = ? "
                                 "and scope in ('fidelity', 'privacy') order by scope, metric", [dataset]).df()
        (tmp / "README.md").write_text(dataset_card(df, dataset, stats or {}, report))
    return {"dir": str(out), "files": files}


EXPORT_FILES = {f"{s}.{ext}" for s in SPLITS for ext in ("jsonl", "parquet")} | {"README.md", ".complete"}


def _check_replaceable(out: Path) -> None:
    """An export replaces its folder whole; refuse a folder that holds anything an export does not write."""
    if not out.is_dir():
        return
    other = sorted(p.name for p in out.iterdir() if p.name not in EXPORT_FILES and not p.name.endswith(".tmp"))
    if other:
        raise ConfigError(f"export folder {out} holds files an export does not write ({', '.join(other[:5])}); an "
                          "export replaces its folder whole. Choose an empty or new folder (export_dir= / --out).")


def counts_markdown(df: pd.DataFrame) -> str:
    t = df.pivot_table(index="task", columns="split", values="instruction_id", aggfunc="count", fill_value=0)
    for s in SPLITS:
        if s not in t.columns:
            t[s] = 0
    t = t[list(SPLITS)]
    t["total"] = t.sum(axis=1)
    t.loc["total"] = t.sum(axis=0)
    lines = ["| task | train | val | test | total |", "|---|---:|---:|---:|---:|"]
    for task, row in t.iterrows():
        lines.append(f"| {task} | " + " | ".join(str(int(v)) for v in row.tolist()) + " |")
    return "\n".join(lines)


def dataset_card(df: pd.DataFrame, dataset: str, stats: dict, note_report: pd.DataFrame | None = None) -> str:
    versions = df.groupby("task")["task_version"].first().to_dict()
    answer_types = df.groupby("task")["answer_type"].agg(lambda s: ", ".join(sorted(set(s)))).to_dict()
    run_ids = sorted(set(df["run_id"]))
    note_flags = set()
    for lin in df[df["task"].isin(["note_qa", "note_reasoning_qa", "note_generation"])]["lineage"]:
        note_flags.add(json.loads(lin).get("note_describes_admission"))
    size = "n<1K" if len(df) < 1000 else "1K<n<10K" if len(df) < 10000 else "10K<n<100K"
    lines = [
        "---",
        f"pretty_name: ehrforge instruction set '{dataset}'",
        "task_categories: [question-answering, text-generation]",
        "language: [en]",
        f"size_categories: [{size}]",
        "configs:",
        "  - config_name: default",
        "    data_files:",
        *[f"      - split: {'validation' if s == 'val' else s}\n        path: {s}.jsonl" for s in SPLITS],
        "---",
        "",
        f"# {dataset}",
        "",
        "Instruction data generated by ehrforge's `synthesis` jobs from the marts of a MIMIC-IV warehouse. Every row "
        "carries its lineage (event ids, outcome id or note id, time window, template id, prompt hash, generator "
        "model, seed) and the split of its patient (marts.dim_splits): no patient appears in two splits.",
        "",
        "**Data use.** Rows are derived from MIMIC-IV (credentialed, PhysioNet DUA). Do not share them outside "
        "the terms of that agreement.",
        "",
    ]
    if False in note_flags:
        lines += ["**Notes.** The note tasks of this set use stand-in notes (PMC-Patients case summaries, CC BY-NC-SA "
                  "4.0) assigned to admissions by sex and age: they do NOT describe the admission they are attached "
                  "to (lineage `note_describes_admission: false`).", ""]
    lines += ["## Counts per task and split", "", counts_markdown(df), "",
              "## Tasks", "", "| task | version | answer types |", "|---|---|---|"]
    lines += [f"| {t} | {versions[t]} | {answer_types[t]} |" for t in sorted(versions)]
    if stats:
        lines += ["", "## LLM generation", "", "| task | stats |", "|---|---|"]
        for t, st in sorted(stats.items()):
            lines.append(f"| {t} | " + ", ".join(f"{k}={v}" for k, v in st.items()) + " |")
    if note_report is not None and len(note_report):
        lines += ["", "## Generated notes: fidelity and privacy", "",
                  "Generated = notes the generator wrote for val/test prompts; real = the cohort's notes; privacy "
                  "compares generated notes with TRAIN-split notes (ROUGE-5 recall of the nearest, share of "
                  "8-grams found in any train note).", "", "| scope | metric | value |", "|---|---|---:|"]
        lines += [f"| {r.scope} | {r.metric} | {r.value:g} |" for r in note_report.itertuples()]
    lines += ["", "## Loading", "", "```python", "from datasets import load_dataset",
              "d = '.'  # this folder",
              f"ds = load_dataset('json', data_files={{s: f'{{d}}/{{s}}.jsonl' for s in ['train', 'val', 'test']}})",
              "ds['train'][0]['messages']", "```", "", f"Run id(s): {', '.join(run_ids)}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    try:
        with warehouse.session(read_only=True) as con:
            warehouse.require_tables(con, [INSTRUCTIONS_TABLE], hint="run `make synthesize` first")
            res = export_dataset(con, args.dataset, args.out)
        print(f"exported {sum(f['n'] for f in res['files'].values())} rows to {res['dir']}")
        return 0
    except EhrforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
