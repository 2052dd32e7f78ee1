"""A small, real-ish warehouse for tests and the CPU learning check, until the real demo tables exist.

    python -m training.synthetic --out /tmp/fixture.duckdb

Writes `marts.dim_splits` (patient-level train/val/test), `marts.fct_notes` (one note per admission) and
`synthesis.instructions` (dataset "demo") with the data-contract columns. The questions are lookups a small
model can learn from the record (sex, admission type, a potassium threshold), so learning is observable.
Every instruction row carries its patient's split. Swap it for the real demo warehouse once `make synthesize`
writes one: the training code reads only the contract columns.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

TASKS = {
    "sex": ("What is the patient's sex? Answer M or F.", "set"),
    "admission_type": ("What was the admission type?", "text"),
    "hyperkalemia": ("Was the potassium above 5.0 mmol/L? Answer yes or no.", "yes_no"),
}
ADMISSION_TYPES = ["URGENT", "ELECTIVE", "EMERGENCY"]


def _patients(n_patients: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n_patients):
        sid = 10000000 + i
        u = rng.random()
        split = "train" if u < 0.7 else ("val" if u < 0.85 else "test")
        sex = rng.choice("MF")
        age = rng.randint(20, 90)
        adms = []
        for j in range(rng.randint(1, 3)):
            adms.append({
                "hadm_id": 20000000 + i * 10 + j,
                "admission_type": rng.choice(ADMISSION_TYPES),
                "potassium": round(rng.uniform(3.0, 7.0), 1),
                "sodium": rng.randint(128, 150),
                "heart_rate": rng.randint(55, 130),
            })
        out.append({"subject_id": sid, "split": split, "sex": sex, "age": age, "admissions": adms})
    return out


def _context(p: dict, a: dict) -> str:
    return (
        f"Patient record\nSex: {p['sex']}\nAge: {p['age']}\nAdmission type: {a['admission_type']}\n"
        f"Potassium: {a['potassium']} mmol/L\nSodium: {a['sodium']} mmol/L\nHeart rate: {a['heart_rate']} bpm"
    )


def _note(p: dict, a: dict) -> str:
    sex = "woman" if p["sex"] == "F" else "man"
    return (
        f"Discharge summary. A {p['age']} year old {sex} was admitted ({a['admission_type'].lower()}). "
        f"Labs showed potassium {a['potassium']} mmol/L and sodium {a['sodium']} mmol/L. Heart rate was "
        f"{a['heart_rate']} beats per minute. The patient was treated and discharged home in stable condition."
    )


def synthetic_frames(n_patients: int = 120, seed: int = 0) -> dict:
    import pandas as pd

    patients = _patients(n_patients, seed)
    splits = pd.DataFrame([{"subject_id": p["subject_id"], "split": p["split"]} for p in patients])
    notes, inst = [], []
    for p in patients:
        for a in p["admissions"]:
            notes.append({"note_id": f"{p['subject_id']}-DS-{a['hadm_id'] % 10}", "subject_id": p["subject_id"],
                          "hadm_id": a["hadm_id"], "note_type": "DS", "clean_text": _note(p, a)})
            answers = {"sex": p["sex"], "admission_type": a["admission_type"],
                       "hyperkalemia": "yes" if a["potassium"] > 5.0 else "no"}
            for task, (question, answer_type) in TASKS.items():
                inst.append({
                    "instruction_id": f"demo-{task}-{a['hadm_id']}",
                    "dataset": "demo",
                    "task": task,
                    "task_version": "1",
                    "split": p["split"],
                    "subject_id": p["subject_id"],
                    "hadm_id": a["hadm_id"],
                    "context": _context(p, a),
                    "instruction": question,
                    "answer": answers[task],
                    "answer_type": answer_type,
                    "lineage": json.dumps({"source": "training.synthetic", "hadm_id": a["hadm_id"]}),
                    "template_id": f"{task}-v1",
                    "prompt_hash": None,
                    "generator_model": "template",
                    "seed": seed,
                })
    return {
        "marts.dim_splits": splits,
        "marts.fct_notes": pd.DataFrame(notes),
        "synthesis.instructions": pd.DataFrame(inst),
    }


def build_synthetic_warehouse(path: str | Path, n_patients: int = 120, seed: int = 0) -> Path:
    """Write the three tables into the DuckDB file at `path` (replacing them)."""
    from ehrforge import warehouse

    path = Path(path)
    frames = synthetic_frames(n_patients, seed)
    with warehouse.session(path) as con:
        con.execute("create schema if not exists marts")
        warehouse.write_table(con, "marts.dim_splits", frames["marts.dim_splits"], replace="all")
        warehouse.write_table(con, "marts.fct_notes", frames["marts.fct_notes"], replace="all")
        run = warehouse.start_run(con, job="synthesis", config={"fixture": "training.synthetic", "seed": seed})
        con.execute("drop table if exists synthesis.instructions")
        warehouse.write_table(con, "synthesis.instructions", frames["synthesis.instructions"], run)
        warehouse.finish_run(con, run)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--patients", type=int, default=120)
    args = parser.parse_args(argv)
    print(build_synthetic_warehouse(args.out, args.patients))


if __name__ == "__main__":
    main()
