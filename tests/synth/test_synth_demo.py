"""The demo instruction set: every family produces rows, answers recompute from lineage, no patient crosses splits,
re-runs neither duplicate rows nor call the LLM again, and the export loads with `datasets`."""

from __future__ import annotations

import json
import shutil

import duckdb
import pandas as pd
import pytest

from synthesis.registry import TASKS

DETERMINISTIC = ["template_qa", "risk_prediction", "decision_making", "note_generation"]
LLM_TASKS = ["note_qa", "note_reasoning_qa", "question_paraphrase"]


def rows_of(con, task=None) -> list[dict]:
    sql = "select * from synthesis.instructions where dataset = 'demo'"
    args = []
    if task:
        sql += " and task = ?"
        args.append(task)
    return con.execute(sql + " order by instruction_id", args).df().to_dict("records")


def test_every_deterministic_family_produces_rows(synth_con):
    counts = dict(synth_con.execute(
        "select task, count(*) from synthesis.instructions where dataset = 'demo' group by 1").fetchall())
    for task in DETERMINISTIC:
        assert counts.get(task, 0) > 0, f"{task} produced no rows: {counts}"
    templates = {r[0] for r in synth_con.execute(
        "select distinct template_id from synthesis.instructions where task = 'template_qa'").fetchall()}
    # every LLemr template family is represented on the demo
    assert {"value_at_time", "abnormal_at_time", "first_value", "last_value", "count", "min", "max", "mean",
            "occurred", "first_time", "last_time", "los"} <= templates
    assert {r[0] for r in synth_con.execute(
        "select distinct template_id from synthesis.instructions where task = 'decision_making'").fetchall()} == \
        {"next_lab", "next_medication", "next_diagnosis"}


def test_llm_tasks_called_the_model_and_rejected_malformed_output_with_reasons(synthesized, synth_con):
    _, first, second, _ = synthesized
    for task in LLM_TASKS:
        st = first["stats"][task]
        assert st["llm_calls"] > 0 and st["llm_requests"] == st["llm_calls"] + st["llm_cached"]
        n_out = synth_con.execute("select count(*) from synthesis.llm_outputs where dataset='demo' and task=?",
                                  [task]).fetchone()[0]
        assert n_out == st["llm_requests"]
    # the tiny random model writes no valid JSON: everything it wrote is rejected, with a reason, and kept for audit
    bad = synth_con.execute(
        "select count(*) from synthesis.llm_outputs where status = 'rejected' and reject_reason is null").fetchone()[0]
    assert bad == 0
    accepted = synth_con.execute(
        "select count(*) from synthesis.llm_outputs o join synthesis.instructions i using (instruction_id) "
        "where o.status = 'accepted'").fetchone()[0]
    n_llm_rows = synth_con.execute(
        "select count(*) from synthesis.instructions where task in ('note_qa','note_reasoning_qa','question_paraphrase')"
    ).fetchone()[0]
    assert accepted == n_llm_rows  # exactly the accepted outputs became rows


def test_no_patient_crosses_splits(synth_con):
    got = synth_con.execute("""
        select count(*) filter (where s.subject_id is null) as n_unmatched,
               count(*) filter (where s.split <> i.split) as n_wrong_split,
               (select count(*) from (select subject_id from synthesis.instructions
                                      group by 1 having count(distinct split) > 1)) as n_multi_split
        from synthesis.instructions i left join marts.dim_splits s using (subject_id)""").fetchone()
    assert got == (0, 0, 0)
    # hadm_id belongs to subject_id (lineage rows are the patient's own)
    assert synth_con.execute("""select count(*) from synthesis.instructions i join marts.dim_admissions a
        using (hadm_id) where a.subject_id <> i.subject_id""").fetchone()[0] == 0


@pytest.mark.parametrize("task", ["template_qa", "risk_prediction", "decision_making", "note_generation",
                                  "question_paraphrase"])
def test_every_answer_recomputes_from_its_lineage(synth_con, task):
    rows = rows_of(synth_con, task)
    if task != "question_paraphrase":
        assert rows
    again = TASKS[task].recompute(synth_con, rows)
    bad = []
    for row, ans in zip(rows, again):
        if ans != row["answer"]:  # exact: rounding is half-up on both sides (LOS in integer tenths of a day)
            bad.append((row["template_id"], row["answer"], ans, row["lineage"][:200]))
    assert not bad, f"{len(bad)}/{len(rows)} answers differ from their recomputation: {bad[:3]}"


def test_template_evidence_is_inside_the_context(synth_con):
    for row in rows_of(synth_con, "template_qa"):
        lin = json.loads(row["lineage"])
        ctx = row["context"]
        if row["template_id"] in ("value_at_time", "abnormal_at_time", "first_time", "last_time"):
            assert lin["item_label"] in ctx
        if row["template_id"] in ("value_at_time", "first_value", "last_value"):
            assert f"| {row['answer']} |" in ctx or f": {row['answer']}" in ctx
        if row["template_id"] in ("first_time", "last_time"):
            assert f"[{row['answer']}]" in ctx
        if "window" in lin:  # the question's window lies inside the part of the record that is shown
            ws = pd.Timestamp(lin["window"][0])
            c = lin["context"]
            assert ws >= pd.Timestamp(c["window_start"])
            assert pd.Timestamp(lin["window"][1]) <= pd.Timestamp(c["window_end"])
            assert c["visible_after"] is None or ws > pd.Timestamp(c["visible_after"])


def test_risk_context_ends_at_prediction_time_and_is_balanced(synth_con):
    rows = rows_of(synth_con, "risk_prediction")
    by = {}
    for r in rows:
        lin = json.loads(r["lineage"])
        assert pd.Timestamp(lin["context"]["window_end"]) <= pd.Timestamp(lin["prediction_time"])
        by.setdefault(lin["outcome"], []).append(r["answer"])
    for outcome, answers in by.items():
        assert answers.count("yes") == answers.count("no"), outcome  # sampling: balanced


def test_rerun_is_deterministic_and_duplicate_free(synthesized, synth_con):
    _, first, second, _ = synthesized
    assert first["run_id"] == second["run_id"]
    assert first["n_rows"] == second["n_rows"]
    pd.testing.assert_frame_equal(first["counts"], second["counts"])
    n, n_ids = synth_con.execute(
        "select count(*), count(distinct instruction_id) from synthesis.instructions").fetchone()
    assert n == n_ids == first["n_rows"]
    for task in LLM_TASKS:  # the second run was answered from llm.calls
        assert second["stats"][task]["llm_calls"] == 0
        assert second["stats"][task]["llm_cached"] == first["stats"][task]["llm_requests"]


def test_export_loads_with_datasets(synthesized):
    from datasets import load_dataset

    _, first, _, _ = synthesized
    files = first["export"]["files"]
    ds = load_dataset("json", data_files={s: f["jsonl"] for s, f in files.items() if f["n"]})
    n = sum(len(ds[s]) for s in ds)
    assert n == first["n_rows"]
    msgs = ds["train"][0]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    pq = load_dataset("parquet", data_files={"train": files["train"]["parquet"]})
    assert len(pq["train"]) == len(ds["train"])
    card = open(first["export"]["dir"] + "/README.md").read()
    assert "| template_qa |" in card and "do NOT describe" in card


def test_note_generation_report_written(synth_con):
    metrics = dict(synth_con.execute(
        "select metric, value from synthesis.note_generation_report where scope = 'fidelity'").fetchall())
    assert metrics["n_real"] > 0 and metrics["real_words_mean"] > 50


def test_demo_rows_fit_the_demo_training_length(synthesized, synth_con):
    """render.tokenizer: generator counts with the tiny model's tokenizer, so demo rows fit training's 1024 tokens."""
    from transformers import AutoTokenizer

    from training.data import to_messages

    tok = AutoTokenizer.from_pretrained(str(synthesized[0].parent / "tiny-llama"))
    lengths = []
    for row in rows_of(synth_con):
        ids = tok.apply_chat_template(to_messages(row), tokenize=True)
        lengths.append(len(ids["input_ids"]) if hasattr(ids, "keys") else len(ids))
    assert max(lengths) <= 1024, sorted(lengths)[-5:]


def test_instructions_expectation_suite_passes_on_the_demo_output(synthesized, tmp_path):
    """The GX `instructions` suite (what `make demo` runs after synthesis) on the real demo output: no critical or
    warn-level failure, schema advisory included (no column left with DuckDB type NULL by an all-null write)."""
    from expectations.run import run_expectations

    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(synthesized[0], copy)
    con = duckdb.connect(str(copy))
    try:
        outcome = run_expectations(con, suites=["instructions"], docs_dir=None)
    finally:
        con.close()
    assert outcome.exit_code == 0, outcome.failed_critical["message"].tolist()
    assert outcome.failed_warn.empty, outcome.failed_warn["message"].tolist()
    assert outcome.result("split_matches_patient")["element_count"] == synthesized[1]["n_rows"]
