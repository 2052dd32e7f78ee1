"""The Asclepius route on the demo: public case reports (marts.dim_case_reports) -> synthetic discharge summaries
(case_report_note) -> note QA over them (note_source: synthetic), and the provenance rule at the synthesis level.

The generator is scripted in place of `run_requests` (the tiny random model writes no note; the real-model run is
the slow test in tests/test_real_model.py): it answers each case-report prompt with a paraphrased note, a verbatim
copy, a note without headings or a two-word note, so every filter is exercised. Parsing, filtering, lineage, splits
and the writes are the real code."""

from __future__ import annotations

import itertools
import json
import re
import shutil

import duckdb
import pytest

from ehrforge.llm import Response

CASE_PROMPT = re.compile(r"Case report:\n(.*)\n\nDischarge summary:", re.S)


def _note_from(case: str, kind: int) -> str:
    words = case.split()
    if kind == 0:  # paraphrase: a word of our own every 7 words, so no run of 20 case words survives
        para = " ".join(w + (" noted" if i % 7 == 6 else "") for i, w in enumerate(words[:120]))
        return (f"Chief Complaint: {words[0]} {words[1]}\nHistory of Present Illness: {para}\n"
                "Brief Hospital Course: The patient was admitted, treated and improved.\n"
                "Discharge Diagnosis: see above\nDischarge Instructions: follow up in clinic")
    if kind == 1:
        return f"History of Present Illness: {case}\nBrief Hospital Course: as described."
    if kind == 2:
        return "The patient " + " ".join(words[:80:2])
    return "Chief Complaint:"


def _scripted(ctx, task, requests):
    counter = itertools.count()
    out = []
    for req in requests:
        user = req.messages[-1]["content"]
        if task == "case_report_note":
            text = _note_from(CASE_PROMPT.search(user).group(1), next(counter) % 4)
        else:
            note = user.split("Note:\n", 1)[1].rsplit("\n\nReply with", 1)[0]
            if "does NOT answer" in user:
                obj = {"instruction": "What was the patient's blood type?",
                       "answer": "The note does not contain this information."}
            else:
                obj = {"instruction": "Summarize the opening of the note in one sentence.",
                       "answer": re.split(r"(?<=\.)\s", note.strip(), 1)[0]}
            text = json.dumps(obj)
        out.append(Response(request_id=req.id, text=text, cache_key=f"k-{req.id}"))
    st = ctx.stats.setdefault(task, {})
    st["llm_requests"] = st.get("llm_requests", 0) + len(requests)
    return out


def test_longest_common_ngram_and_sections():
    from synthesis.synthetic_notes import longest_common_ngram, split_sections
    from synthesis.tasks.case_report_note import excerpt

    a, b = "the cat sat on the mat today", "yesterday a Cat sat, on the mat."
    assert longest_common_ngram(a, b) == 5 and longest_common_ngram(a, "dog") == 0
    brute = max((n for n in range(1, 8) for i in range(8 - n) for j in range(8 - n)
                 if a.lower().split()[i:i + n] == re.findall(r"\w+", b.lower())[j:j + n]), default=0)
    assert brute == 5
    sec = split_sections("Chief Complaint: pain\n**History of Present Illness:** 2 days\nBrief hospital course: ok")
    assert sec == {"chief_complaint": "pain", "history_of_present_illness": "2 days", "brief_hospital_course": "ok"}
    text = "First sentence here. Second one is longer than that. Third."
    assert excerpt(text, 30) == "First sentence here."


def test_note_filters_reject_by_reason():
    from synthesis.llm_io import Rejected
    from synthesis.tasks.case_report_note import CaseReportNoteConfig, check_note

    cfg = CaseReportNoteConfig(min_note_words=20)
    case = " ".join(f"w{i}" for i in range(200))
    reasons = []
    for kind in range(4):
        try:
            check_note(_note_from(case, kind), case, cfg)
            reasons.append("accepted")
        except Rejected as rej:
            reasons.append(rej.reason)
    assert reasons == ["accepted", "verbatim_copy", "missing_sections", "too_short"]
    got = check_note(_note_from(case, 0), case, cfg)
    assert got["longest_copied_ngram"] == 7 and "brief_hospital_course" in got["sections"]
    with pytest.raises(Rejected, match="empty_output"):
        check_note("  \n", case, cfg)


def test_per_section_prompts_are_assembled_under_the_headings_then_filtered(monkeypatch):
    """prompt_style per_section: one request per heading; the note is the cleaned first paragraphs under the
    headings, and a section the model left empty is missing (the required-sections filter sees it)."""
    from types import SimpleNamespace

    import synthesis.tasks.case_report_note as crn

    answers = {"chief_complaint": "**Chief Complaint:** chest pain", "history_of_present_illness": "",
               "brief_hospital_course": "Treated with aspirin and observed.\n\nTreated with aspirin and observed."}
    seen = []

    def fake(ctx, task, requests):
        seen.extend(requests)
        return [Response(request_id=r.id, text=answers[r.id.rsplit(":", 1)[1]], cache_key=r.id) for r in requests]

    monkeypatch.setattr(crn, "run_requests", fake)
    cfg = crn.CaseReportNoteConfig(prompt_style="per_section", headings=list(answers), min_note_words=3)
    chosen = [{"instruction_id": "case-1", "_r": {"case_text": "A man had chest pain. He got aspirin."}}]
    [(c, case, msgs, resp)] = crn.CaseReportNote()._generate(SimpleNamespace(seed=0), cfg, chosen,
                                                             ["marts.dim_case_reports"], "public")
    assert [r.id for r in seen] == ["case-1:chief_complaint", "case-1:history_of_present_illness",
                                    "case-1:brief_hospital_course"]
    assert all(r.sources == ["marts.dim_case_reports"] and not r.contains_phi for r in seen)
    assert resp.text == "Chief Complaint: chest pain\nBrief Hospital Course: Treated with aspirin and observed."
    from synthesis.llm_io import Rejected

    with pytest.raises(Rejected, match="missing_sections"):
        crn.check_note(resp.text, case, cfg)


@pytest.fixture
def scripted_run(demo_warehouse, tmp_path, monkeypatch):
    import synthesis.tasks.case_report_note as crn
    import synthesis.tasks.note_qa as note_qa
    from synthesis.cli import synthesize
    from synthesis.config import load_synthesis_config

    for mod in (crn, note_qa):
        monkeypatch.setattr(mod, "run_requests", _scripted)
        monkeypatch.setattr(mod, "generator_model", lambda ctx: "scripted")
    path = tmp_path / "w.duckdb"
    shutil.copy(demo_warehouse, path)
    cfg = load_synthesis_config("synthesis/configs/asclepius_demo.yaml", [
        "progress=false", "export=false", "max_admissions=5", "tasks.case_report_note.quota=24", "tasks.note_qa.quota=8",
        "tasks.case_report_note.prompt_style=whole_note", "tasks.case_report_note.min_note_words=40",
        "tasks.note_qa.task_types=[summarization,question_answering]", "tasks.note_reasoning_qa.enabled=false"])
    con = duckdb.connect(str(path))
    try:
        res = synthesize(cfg, con=con)
    finally:
        con.close()
    return path, res


def test_case_reports_become_filtered_synthetic_notes_and_note_qa_runs_over_them(scripted_run):
    path, res = scripted_run
    st = res["stats"]["case_report_note"]
    assert st["llm_requests"] == 24 and st["accepted"] == 6
    assert st["rejections"] == {"verbatim_copy": 6, "missing_sections": 6, "too_short": 6}
    con = duckdb.connect(str(path), read_only=True)
    try:
        notes = con.execute(
            "select n.*, c.split as case_split, c.case_text from synthesis.synthetic_notes n "
            "left join marts.dim_case_reports c using (case_report_id) where n.dataset = 'asclepius-demo'").df()
        outputs = con.execute("select task, status, reject_reason, source_id from synthesis.llm_outputs "
                              "where dataset = 'asclepius-demo'").df()
        rows = con.execute("select * from synthesis.instructions where dataset = 'asclepius-demo'").df()
        # the GX instructions suite compares a row without a patient with its case report's split
        from expectations.config import Settings
        from expectations.suites.instructions import build

        [sample] = [f for f in build(Settings()) if f.kind == "sample"]
        gx_sample = con.execute(sample.query).df()
    finally:
        con.close()
    # lineage: every note joins its case report, takes its split, copies < 20 consecutive words, and is public
    assert len(notes) == 6 and notes["case_text"].notna().all()
    assert (notes["split"] == notes["case_split"]).all() and (notes["provenance"] == "public").all()
    assert (notes["longest_copied_ngram"] < 20).all()
    assert set(json.loads(notes["source_tables"].iloc[0])) == {"marts.dim_case_reports"}
    rej = outputs[(outputs["task"] == "case_report_note") & (outputs["status"] == "rejected")]
    assert len(rej) == 18 and rej["source_id"].isin(set(notes["case_report_id"])).sum() == 0
    # instruction rows: case report -> note, and note QA over the synthetic notes (no patient, the note's split)
    crn = rows[rows["task"] == "case_report_note"]
    assert len(crn) == 6 and crn["subject_id"].isna().all()
    qa = rows[rows["task"] == "note_qa"]
    assert len(qa) > 0 and qa["subject_id"].isna().all() and qa["hadm_id"].isna().all()
    assert set(gx_sample["task"]) >= {"case_report_note", "note_qa"}
    assert (gx_sample["split"] == gx_sample["patient_split"]).all()
    split_of = dict(zip(notes["synthetic_note_id"], notes["split"]))
    for r in qa.to_dict("records"):
        lin = json.loads(r["lineage"])
        assert lin["note_source"] == "synthetic" and lin["provenance"] == "public"
        assert lin["source_marts"] == ["synthesis.synthetic_notes"] and r["split"] == split_of[lin["note_id"]]
        assert r["context"] in notes.set_index("synthetic_note_id").loc[lin["note_id"], "note_text"]


def test_provenance_decides_the_endpoint_of_synthesis_requests(demo_warehouse, tmp_path):
    """A loopback URL configured as external and public-only (nothing listens there): MIMIC note prompts are
    refused by the guard before anything is sent; case-report prompts pass the guard (and then find no server)."""
    import socket

    from ehrforge.llm import EndpointUnreachable, PHIGuardError
    from synthesis.cli import synthesize
    from synthesis.config import load_synthesis_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    path = tmp_path / "w.duckdb"
    shutil.copy(demo_warehouse, path)
    llm = ["generator.llm.backend=openai", f"generator.llm.base_url={url}", "generator.llm.model=m",
           "generator.llm.approve_loopback=false", f"generator.llm.public_data_endpoints=[{url}]",
           "generator.llm.timeout_s=2", "generator.llm.max_retries=0", "progress=false", "export=false", "max_admissions=5"]
    con = duckdb.connect(str(path))
    try:
        mimic = load_synthesis_config("synthesis/configs/asclepius_demo.yaml", llm + [
            "tasks.case_report_note.enabled=false", "tasks.note_reasoning_qa.enabled=false",
            "tasks.note_qa.note_source=mimic", "tasks.note_qa.quota=2"])
        with pytest.raises(PHIGuardError, match="marts.fct_notes"):
            synthesize(mimic, con=con)
        public = load_synthesis_config("synthesis/configs/asclepius_demo.yaml", llm + [
            "tasks.note_qa.enabled=false", "tasks.note_reasoning_qa.enabled=false", "tasks.case_report_note.quota=2"])
        with pytest.raises(EndpointUnreachable):
            synthesize(public, con=con)
    finally:
        con.close()


@pytest.mark.slow  # ~12 s: two dbt invocations
def test_a_bad_case_report_file_stops_the_build_naming_it(tmp_path, dbt_env, monkeypatch):
    """PMC_PATIENTS_CSV pointing at no file, or at a CSV without PMC-Patients' columns: the dbt hook stops before any
    model runs, naming the variable, the file and what is missing."""
    from dbt.cli.main import dbtRunner

    from ehrforge.build import release_dbt_connection
    from ehrforge.paths import DBT_PROJECT_DIR

    def run(csv):
        monkeypatch.setenv("PMC_PATIENTS_CSV", str(csv))
        monkeypatch.setenv("EHRFORGE_DUCKDB", str(tmp_path / "w.duckdb"))
        try:
            res = dbtRunner().invoke(["run", "--select", "stg_pmc_patients__case_reports", "--project-dir",
                                      str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR), "--quiet"])
        finally:
            release_dbt_connection()
        assert not res.success
        return str(res.exception or res.result)

    assert re.search(r"PMC_PATIENTS_CSV=\S*nowhere\.csv is not a file", run(tmp_path / "nowhere.csv"))
    bad = tmp_path / "reports.csv"
    bad.write_text("patient_id,title,text\n1,a,b\n")
    assert re.search(r"reports\.csv \(PMC_PATIENTS_CSV\) lacks column\(s\) patient_uid, PMID, age, gender", run(bad))
