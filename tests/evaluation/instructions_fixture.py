"""A small instruction set built from the real demo marts in the `synthesis.instructions` layout (COMMON.md), for
evaluation tests and the benchmark while the synthesis branch is not merged. Every row comes from warehouse data:

  in_hospital_mortality, los_gt_3d (yes_no)  fct_outcomes labels; context = admission facts + first-24h labs
  length_of_stay (number)                    dim_admissions.los_days, context = admit/discharge times
  abnormal_labs_24h (set)                    abnormal lab names in the first 24 h (at most 5), context = those labs
  hospital_course (text)                     first sentence of the note's brief hospital course, context = HPI
  discharge_note (text, synthetic-note task) first 400 chars of the note, context = admission facts
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd

DATASET = "demo-eval-fixture"


def _facts(r) -> str:
    return (f"Patient: {r['gender']}, {r['age_at_admission']} years. Admission type: {r['admission_type']}, "
            f"from {r['admission_location']}. Insurance: {r['insurance']}.")


def build_rows(con) -> pd.DataFrame:
    adm = con.execute("""
        select a.*, s.split from marts.dim_admissions a join marts.dim_splits s using (subject_id)
        order by a.hadm_id""").df()
    labs = con.execute("""
        select hadm_id, item_label, value_num, unit, is_abnormal from marts.fct_events
        where event_type = 'lab' and hours_since_admit between 0 and 24 and value_num is not null
        order by hadm_id, event_time, item_label""").df()
    lab_by = {h: g for h, g in labs.groupby("hadm_id")}
    outcomes = con.execute("""
        select hadm_id, task, label from marts.fct_outcomes
        where task in ('in_hospital_mortality', 'los_gt_3d')""").df()
    notes = con.execute("""
        select hadm_id, history_of_present_illness, brief_hospital_course, clean_text from marts.fct_notes
        where note_type = 'discharge' and note_seq = 1""").df().set_index("hadm_id")
    rows = []

    def add(r, task, answer_type, context, instruction, answer):
        iid = hashlib.sha256(f"{task}:{r['hadm_id']}".encode()).hexdigest()[:16]
        rows.append({
            "instruction_id": iid, "dataset": DATASET, "task": task, "task_version": "1", "split": r["split"],
            "subject_id": int(r["subject_id"]), "hadm_id": int(r["hadm_id"]), "context": context,
            "instruction": instruction, "answer": answer, "answer_type": answer_type,
            "lineage": json.dumps({"hadm_id": int(r["hadm_id"]), "source": "marts"}), "template_id": f"{task}-v1",
            "prompt_hash": hashlib.sha256((context + instruction).encode()).hexdigest()[:16],
            "generator_model": None, "seed": 0,
        })

    by_hadm = adm.set_index("hadm_id", drop=False)
    for o in outcomes.itertuples():
        r = by_hadm.loc[o.hadm_id]
        lab = lab_by.get(o.hadm_id)
        lines = [] if lab is None else [f"{x.item_label}: {x.value_num:g} {x.unit or ''}".strip()
                                         for x in lab.head(25).itertuples()]
        ctx = _facts(r) + "\nLabs, first 24 h:\n" + "\n".join(lines)
        q = {"in_hospital_mortality": "Will this patient die during this hospital stay? Answer yes or no.",
             "los_gt_3d": "Will this patient stay in hospital longer than 3 days? Answer yes or no."}[o.task]
        add(r, o.task, "yes_no", ctx, q, "yes" if o.label else "no")
    for _, r in adm.iterrows():
        if pd.notna(r["los_days"]):
            add(r, "length_of_stay", "number",
                f"Admitted {r['admittime']}, discharged {r['dischtime']}.",
                "How many days did the patient stay in hospital? Answer with a number.", f"{r['los_days']:.1f}")
        lab = lab_by.get(r["hadm_id"])
        if lab is not None and lab["is_abnormal"].fillna(False).any():
            ab = lab[lab["is_abnormal"].fillna(False)]
            names = list(dict.fromkeys(ab["item_label"]))[:5]
            ctx = "\n".join(f"{x.item_label}: {x.value_num:g} {x.unit or ''}".strip()
                            for x in lab[lab["item_label"].isin(names) | ~lab["is_abnormal"].fillna(False)]
                            .head(30).itertuples())
            add(r, "abnormal_labs_24h", "set", ctx,
                "Which of these lab results are abnormal? List the test names separated by semicolons.",
                "; ".join(names))
        if r["hadm_id"] in notes.index:
            n = notes.loc[r["hadm_id"]]
            course = (n["brief_hospital_course"] or "").split(". ")[0].strip()
            if course and n["history_of_present_illness"]:
                add(r, "hospital_course", "text", n["history_of_present_illness"][:1500],
                    "Summarise the hospital course in one sentence.", course)
            if n["clean_text"]:
                add(r, "discharge_note", "text", _facts(r), "Write the discharge summary for this admission.",
                    n["clean_text"][:400])
    return pd.DataFrame(rows)


def write_instructions(con, table: str = "synthesis.instructions") -> int:
    from ehrforge import warehouse

    df = build_rows(con)
    run = warehouse.start_run(con, job="synthesis-fixture", config={"dataset": DATASET, "source": "marts"})
    warehouse.write_table(con, table, df, run)
    warehouse.finish_run(con, run)
    return len(df)
