"""ICD-coding utility benchmark on the demo warehouse (evaluation/icd_utility.py). The demo's real notes are
PMC-Patients stand-ins unrelated to their admissions' codes, so the figures are mechanics only. Synthetic notes come
from the note_generation task (real code path, real filters) with a scripted generator that writes each note from
its prompt (the admission's diagnoses): the tiny random model writes nothing, and the real model is the slow test."""

from __future__ import annotations

import re
import shutil

import duckdb
import pytest

from ehrforge.llm import Response


def _scripted(ctx, task, requests):
    out = []
    for req in requests:
        dx = re.findall(r"^- (.+) \(", req.messages[-1]["content"], re.M)
        text = "Discharge Diagnosis:\n" + "\n".join(dx) + "\nBrief Hospital Course: treated and discharged."
        out.append(Response(request_id=req.id, text=text, cache_key=f"k-{req.id}"))
    ctx.stats.setdefault(task, {})["llm_requests"] = len(requests)
    return out


@pytest.fixture
def generated(demo_warehouse, tmp_path, monkeypatch):
    import synthesis.tasks.note_generation as ng
    from synthesis.cli import synthesize
    from synthesis.config import load_synthesis_config

    monkeypatch.setattr(ng, "run_requests", _scripted)
    monkeypatch.setattr(ng, "generator_model", lambda ctx: "scripted")
    path = tmp_path / "w.duckdb"
    shutil.copy(demo_warehouse, path)
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(path))
    off = [f"tasks.{t}.enabled=false" for t in ("template_qa", "risk_prediction", "decision_making", "note_qa",
                                                 "note_reasoning_qa", "question_paraphrase")]
    cfg = load_synthesis_config("synthesis/configs/demo.yaml", off + [
        "dataset=utility", "progress=false", "export=false", "tasks.note_generation.quota=1000",
        "tasks.note_generation.generate_n=0", "tasks.note_generation.utility_train_n=60"])
    con = duckdb.connect(str(path))
    try:
        synthesize(cfg, con=con)
    finally:
        con.close()
    return path


def test_coder_learns_codes_from_text_and_scores_per_code():
    """The coder on hand-written notes: each code has its own words, so held-out notes are coded exactly; a code no
    train note has gets F1 0 (never predicted) and a code no test note has is left out of macro F1."""
    import pandas as pd

    from evaluation.icd_utility import UtilityConfig, run_arm

    words = {"J18": "pneumonia infiltrate cough", "N17": "creatinine kidney injury", "I50": "heart failure edema"}

    def notes(combos):
        return pd.DataFrame({"text": [" ".join(words[c] for c in cs) + f" patient {i}" for i, cs in enumerate(combos)],
                             "codes": [list(cs) for cs in combos]})

    train = notes([("J18",), ("N17",), ("I50",), ("J18", "N17"), ("N17", "I50"), ("J18", "I50")] * 3)
    test = notes([("J18",), ("N17", "I50"), ("J18", "N17")])
    res = run_arm(train, test, ["I50", "J18", "N17", "Z99"], UtilityConfig(dataset="x"))
    assert res["summary"]["micro_f1"] == 1.0 and res["summary"]["macro_f1"] == 1.0
    by_code = {r["code"]: r for r in res["per_code"]}
    assert by_code["Z99"]["f1"] is None and by_code["Z99"]["n_predicted"] == 0
    assert by_code["J18"]["train_notes_with_code"] == 9 and by_code["J18"]["test_notes_with_code"] == 2
    wrong = run_arm(train.assign(codes=train["codes"].apply(lambda c: ["J18"] if "N17" in c else [])), test,
                    ["J18", "N17"], UtilityConfig(dataset="x"))
    assert wrong["summary"]["micro_f1"] < 1.0


@pytest.mark.slow  # a demo synthesis run + three coders: ~45 s on 2 busy cores
def test_real_vs_synthetic_coder_into_the_warehouse(generated):
    from evaluation.icd_utility import UtilityConfig, icd_utility

    con = duckdb.connect(str(generated))
    try:
        gen = con.execute("select g.*, s.split as patient_split from synthesis.generated_notes g "
                          "join marts.dim_splits s using (subject_id) where dataset = 'utility'").df()
        res = icd_utility(UtilityConfig(dataset="utility", top_codes=15, min_train_notes=3), con=con)
        util = con.execute("select * from evaluation.icd_utility where run_id = ?", [res["run_id"]]).df()
        codes = con.execute("select * from evaluation.icd_utility_per_code where run_id = ?", [res["run_id"]]).df()
        n_test = con.execute("select count(distinct n.note_id) from marts.fct_notes n join marts.dim_splits s "
                             "using (subject_id) join marts.fct_events e on e.hadm_id = n.hadm_id and "
                             "e.event_type = 'diagnosis' where s.split = 'test' and n.note_type = 'discharge'"
                             ).fetchone()[0]
    finally:
        con.close()
    # the synthetic notes: train-split admissions only, one per admission, from the generator
    assert len(gen) == 60 and (gen["split"] == "train").all() and (gen["patient_split"] == "train").all()
    assert gen["hadm_id"].is_unique
    # three arms x four metrics; the paired arms train on the same 60 admissions; test = real test-patient notes
    assert set(zip(util["arm"], util["metric"])) == {(a, m) for a in ("real", "synthetic", "real_all") for m in
                                                     ("micro_f1", "macro_f1", "micro_precision", "micro_recall")}
    n_train = util.groupby("arm")["n_train_notes"].first()
    assert n_train["real"] == n_train["synthetic"] == 60 and n_train["real_all"] > 60
    assert (util["n_test_notes"] == n_test).all() and n_test > 0
    assert util["value"].dropna().between(0, 1).all()
    # per-code rows: every label for every arm; macro F1 is the mean of the defined per-code F1s
    assert len(codes) == 3 * len(res["labels"]) == 3 * int(util["n_codes"].iloc[0])
    for arm in ("real", "synthetic", "real_all"):
        macro = util[(util["arm"] == arm) & (util["metric"] == "macro_f1")]["value"].iloc[0]
        assert macro == pytest.approx(codes[codes["arm"] == arm]["f1"].dropna().mean())
    # frequencies are the counts among the real train notes (the label space's basis)
    top = codes[codes["arm"] == "real_all"].sort_values("train_notes_with_code").iloc[-1]
    assert top["train_notes_with_code"] >= 3


def test_clear_error_without_synthetic_notes(demo_warehouse):
    from ehrforge.errors import InputDataError
    from evaluation.icd_utility import UtilityConfig, icd_utility

    con = duckdb.connect(str(demo_warehouse), read_only=True)
    try:
        with pytest.raises(InputDataError, match="utility_train_n"):
            icd_utility(UtilityConfig(dataset="nope"), con=con)
    finally:
        con.close()


def test_report_section_plots_per_code_f1_against_frequency(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from evaluation.report import icd_utility_section

    util = pd.DataFrame({"dataset": ["d"] * 2, "metric": ["macro_f1", "micro_f1"], "real_value": [0.5, 0.6],
                         "synthetic_value": [0.2, 0.3], "real_all_value": [0.7, 0.8],
                         "synthetic_minus_real": [-0.3, -0.3], "n_synthetic_train_notes": [24, 24],
                         "n_real_train_notes": [236, 236], "n_test_notes": [22, 22], "n_codes": [2, 2]})
    codes = pd.DataFrame({"arm": ["real", "synthetic", "real_all"] * 2, "code": ["A"] * 3 + ["B"] * 3,
                          "train_notes_with_code": [3, 3, 9, 2, 2, 5], "f1": [0.5, 0.2, 0.7, None, None, None]})
    parts = icd_utility_section(plt, util, codes, tmp_path)
    assert (tmp_path / "icd_utility_per_code.png").stat().st_size > 0
    html = "\n".join(parts)
    assert "22 real notes of test patients" in html and "-0.3" in html
    assert icd_utility_section(plt, util.iloc[:0], codes, tmp_path) == []
