"""Reasoning chains (synthesis/tasks/reasoning_chain.py) over the evidence graph, with a scripted generator in place
of the model (the real-model yield is in docs/reasoning-grpo.md): right chains become SFT rows with a thinking
section, a wrong final answer or no answer line is rejected with that reason, and lineage names the graph rows."""

from __future__ import annotations

import json
import re
import shutil

import duckdb

from ehrforge.answers import strip_thinking
from ehrforge.llm import Response

SENT: list = []


def _scripted(ctx, task, requests):
    """Every third chain is right, every third names a wrong answer, every third has no answer line."""
    out = []
    for i, req in enumerate(requests):
        SENT.append(req)
        user = req.messages[-1]["content"]
        gold = re.search(r"The correct answer is: (.*)\. Explain how", user).group(1)
        if i % 3 == 0:
            text = f"The record shows the findings asked about.\nThey lead to the answer.\nAnswer: {gold}"
        elif i % 3 == 1:
            text = "The record shows the findings asked about, so the answer is clear.\nAnswer: 98765 unlikely"
        else:
            text = "The record shows many findings but I will not commit to an answer."
        out.append(Response(request_id=req.id, text=text, cache_key=f"k{i}"))
    st = ctx.stats.setdefault(task, {})
    st["llm_requests"] = st.get("llm_requests", 0) + len(requests)
    return out


def test_chains_are_verified_and_rows_carry_thinking_and_graph_lineage(demo_warehouse, tmp_path, monkeypatch):
    import synthesis.tasks.reasoning_chain as rc
    from synthesis.cli import synthesize
    from synthesis.config import load_synthesis_config
    from synthesis.registry import TASKS

    SENT.clear()
    monkeypatch.setattr(rc, "run_requests", _scripted)
    monkeypatch.setattr(rc, "generator_model", lambda ctx: "scripted")
    path = tmp_path / "w.duckdb"
    shutil.copy(demo_warehouse, path)
    cfg = load_synthesis_config("synthesis/configs/demo_reasoning.yaml", [
        "dataset=scripted-reasoning", "progress=false", "export=false", "max_admissions=40",
        "tasks.template_qa.quota=60", "tasks.risk_prediction.quota=20", "tasks.decision_making.quota=12",
        "tasks.reasoning_chain.quota=18", "tasks.reasoning_chain.reveal_answer=true",
        "render.tokenizer=null"])   # count tokens by chars/4: the scripted run needs no model
    con = duckdb.connect(str(path))
    try:
        res = synthesize(cfg, con=con)
        rows = con.execute("select * from synthesis.instructions where dataset = 'scripted-reasoning'").df()
        outputs = con.execute("select * from synthesis.llm_outputs where dataset = 'scripted-reasoning' "
                              "and task = 'reasoning_chain'").df()
        pairs = con.execute("select pair_id, antecedent_id, consequent_id from marts.fct_evidence_pairs").df()
        rc_rows = rows[rows["task"] == "reasoning_chain"]
        recomputed = TASKS["reasoning_chain"].recompute(con, rc_rows.to_dict("records"))
    finally:
        con.close()

    n = len(SENT)
    assert n == 18
    st = res["stats"]["reasoning_chain"]
    assert st["accepted"] == len(rc_rows) == (n + 2) // 3
    assert st["rejections"] == {"wrong_answer": (n + 1) // 3, "no_final_answer": n // 3}
    assert sorted(outputs["status"].value_counts().items()) == [("accepted", len(rc_rows)),
                                                                ("rejected", n - len(rc_rows))]
    assert set(outputs.loc[outputs.status == "rejected", "reject_reason"]) == {"wrong_answer", "no_final_answer"}
    # parents from the train/val splits only, several source tasks
    assert set(rc_rows["split"]) <= {"train", "val"}
    parents = rows.set_index("instruction_id")
    n_links = 0
    for r, again in zip(rc_rows.to_dict("records"), recomputed):
        lin = json.loads(r["lineage"])
        parent = parents.loc[lin["parent_instruction_id"]]
        thinking, answer = strip_thinking(r["answer"])
        # the SFT target: the chain as a thinking section, then the parent's gold answer (recomputable from lineage)
        assert r["answer"].startswith("<think>\n") and thinking.startswith("The record shows")
        assert answer == parent["answer"] == again
        assert r["context"] == parent["context"] and r["instruction"] == parent["instruction"]
        assert r["split"] == parent["split"] and r["answer_type"] == parent["answer_type"]
        # the graph rows used: pairs of marts.fct_evidence_pairs between entities of the record
        used = pairs[pairs.pair_id.isin(lin["graph"]["pair_ids"])]
        assert len(used) == len(lin["graph"]["pair_ids"])
        assert set(used.antecedent_id) | set(used.consequent_id) <= set(lin["graph"]["entity_ids"])
        n_links += len(used)
    assert n_links > 0, "no accepted row used a graph link: the record entities or the pairs are not found"
    # the prompts show the links, and the links name entities the record shows
    prompt = SENT[0].messages[-1]["content"]
    assert "## Links between findings in this record" in prompt and "Question: " in prompt


def test_without_reveal_the_prompt_holds_no_gold_answer():
    from synthesis.tasks.reasoning_chain import ReasoningConfig, check_chain
    from synthesis.llm_io import Rejected

    cfg = ReasoningConfig()
    assert cfg.reveal_answer is False and cfg.splits == ["train", "val"]
    assert check_chain("Potassium 6.1 is above 5.1, so high.\nAnswer: yes", "yes", "yes_no", cfg)[1] == "yes"
    for text, reason in [("Potassium 6.1 is above 5.1, so high.\nAnswer: no", "wrong_answer"),
                         ("Answer: yes", "no_reasoning"), ("", "empty_output"),
                         ("Potassium is high, it seems to me.", "no_final_answer")]:
        try:
            check_chain(text, "yes", "yes_no", cfg)
        except Rejected as rej:
            assert rej.reason == reason
        else:
            raise AssertionError(f"{text!r} was accepted")
