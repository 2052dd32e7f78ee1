"""The accept path of the LLM tasks, with a scripted generator in place of the model.

The tiny random model never writes valid JSON, and the llm branch's test server generates with a real model (no
scripted replies), so here `run_requests` (the tasks' one call into ehrforge.llm.run_batch) is replaced by a
function that answers each prompt with well-formed output built from the prompt itself. Parsing, filtering,
bootstrapping, lineage and the split rule are the real code."""

from __future__ import annotations

import json
import re
import shutil

import duckdb

from ehrforge.llm import Response


def _scripted(ctx, task, requests):
    out = []
    for i, req in enumerate(requests):
        user = req.messages[-1]["content"]
        if task == "question_paraphrase":
            text = "Could you tell me " + user[0].lower() + user[1:]
        else:
            note = user.split("Note:\n", 1)[1].rsplit("\n\nReply with", 1)[0]
            if "does NOT answer" in user:
                obj = {"instruction": "What was the patient's blood type?",
                       "answer": "The note does not contain this information."}
            elif i % 4 == 3:
                text = "I cannot help with that."  # malformed on purpose: must be rejected, not kept
                out.append(Response(request_id=req.id, text=text, cache_key=f"k{i}"))
                continue
            else:
                first = re.split(r"(?<=\.)\s", note.strip(), 1)[0]
                obj = {"instruction": "Summarize the opening of the note in one sentence.", "answer": first}
            text = "```json\n" + json.dumps(obj) + "\n```"
        out.append(Response(request_id=req.id, text=text, cache_key=f"k{i}"))
    st = ctx.stats.setdefault(task, {})
    st["llm_requests"] = st.get("llm_requests", 0) + len(requests)
    return out


def test_valid_outputs_become_rows_with_lineage_and_bootstrap_within_split(demo_warehouse, tmp_path, monkeypatch):
    import synthesis.tasks.note_qa as note_qa
    import synthesis.tasks.question_paraphrase as para
    from synthesis.cli import synthesize
    from synthesis.config import load_synthesis_config

    monkeypatch.setattr(note_qa, "run_requests", _scripted)
    monkeypatch.setattr(para, "run_requests", _scripted)
    monkeypatch.setattr(note_qa, "generator_model", lambda ctx: "scripted")
    monkeypatch.setattr(para, "generator_model", lambda ctx: "scripted")
    path = tmp_path / "w.duckdb"
    shutil.copy(demo_warehouse, path)
    cfg = load_synthesis_config("synthesis/configs/demo.yaml", [
        "dataset=scripted", "progress=false", "export=false", "max_admissions=30",
        "tasks.risk_prediction.enabled=false", "tasks.decision_making.enabled=false",
        "tasks.note_generation.enabled=false", "tasks.note_reasoning_qa.enabled=false",
        "tasks.template_qa.quota=20", "tasks.note_qa.quota=16", "tasks.note_qa.task_types=[summarization,question_answering]",
        "tasks.note_qa.unanswerable_fraction=0.3", "tasks.question_paraphrase.quota=6",
        "tasks.question_paraphrase.source_tasks=[template_qa]"])
    con = duckdb.connect(str(path))
    try:
        res = synthesize(cfg, con=con)
        rows = con.execute("select * from synthesis.instructions where dataset = 'scripted'").df()
        outputs = con.execute("select * from synthesis.llm_outputs where dataset = 'scripted'").df()
    finally:
        con.close()
    nq = rows[rows["task"] == "note_qa"]
    assert len(nq) > 0 and (nq["generator_model"] == "scripted").all() and nq["prompt_hash"].notna().all()
    # malformed replies were rejected with a reason, and only accepted outputs became rows
    rejected = outputs[(outputs["task"] == "note_qa") & (outputs["status"] == "rejected")]
    assert len(rejected) > 0 and set(rejected["reject_reason"]) == {"not_json"}
    assert len(nq) == ((outputs["task"] == "note_qa") & (outputs["status"] == "accepted")).sum()
    lins = [json.loads(x) for x in nq["lineage"]]
    assert all(lin["note_describes_admission"] is False and lin["note_id"] for lin in lins)
    unans = [r for r, lin in zip(nq.to_dict("records"), lins) if lin["unanswerable"]]
    assert unans and all(r["answer"] == "The note does not contain this information." for r in unans)
    # bootstrapping: round-2 prompts used round-1 accepted examples, only from the same split
    split_of = dict(zip(nq["instruction_id"], nq["split"]))
    boot_used = 0
    for r, lin in zip(nq.to_dict("records"), lins):
        for sid in lin["shot_ids"]:
            if not sid.startswith("seed:"):
                boot_used += 1
                assert lin["round"] == 1 and split_of[sid] == r["split"]
    assert boot_used > 0
    # paraphrases: new wording, the parent's answer untouched, lineage back to the parent
    pq = rows[rows["task"] == "question_paraphrase"]
    assert len(pq) > 0
    parents = rows.set_index("instruction_id")
    for r in pq.to_dict("records"):
        lin = json.loads(r["lineage"])
        parent = parents.loc[lin["parent_instruction_id"]]
        assert r["answer"] == parent["answer"] and r["instruction"] != parent["instruction"]
        assert r["instruction"].startswith("Could you tell me") and r["split"] == parent["split"]
    assert res["stats"]["note_qa"]["accepted"] == len(nq)
