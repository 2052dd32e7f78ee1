"""Rendering, LLM-output parsing and filters, note privacy metrics, config errors: small and fast."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from ehrforge.errors import ConfigError
from synthesis.llm_io import UNANSWERABLE, Rejected, check_instruction_answer, parse_json_object
from synthesis.note_report import fidelity_stats, privacy_stats
from synthesis.render import EVENT_COLUMNS, render_events
from synthesis.tasks.note_qa import NoteQA
from synthesis.tasks.question_paraphrase import check_paraphrase, split_question

# Raw outputs recorded from the tiny random model through ehrforge.llm (transformers backend) on the demo:
# it writes only newlines or token soup, never JSON.
RECORDED_TINY_OUTPUTS = ["\n" * 48, "", "   ", "ICU ICU mg mg mg ___ ___ Hospital Course: ___ ___ ___"]
NOTE = ("Chief Complaint: chest pain. History of Present Illness: A 60-year-old woman with HTN and DM2 presented "
        "with chest pain; troponin was elevated. Brief Hospital Course: She was started on aspirin and heparin and "
        "underwent cardiac catheterization, which showed a 90% LAD stenosis treated with a stent.")


@pytest.fixture(scope="module")
def admission_events(demo_warehouse):
    con = duckdb.connect(str(demo_warehouse), read_only=True)
    hadm = con.execute("select hadm_id from marts.dim_admissions where is_llemr_cohort order by los_days desc "
                       "limit 1").fetchone()[0]
    adm = con.execute("select * from marts.dim_admissions where hadm_id = ?", [hadm]).df().to_dict("records")[0]
    ev = con.execute(f"select {', '.join(EVENT_COLUMNS)} from marts.fct_events where hadm_id = ? "
                     "and event_type = 'lab' and window_status = 'in_admission'", [hadm]).df()
    con.close()
    return adm, ev


def test_render_keeps_the_most_recent_events_within_budget(admission_events):
    adm, ev = admission_events
    start, end = pd.Timestamp(adm["admittime"]).floor("min"), pd.Timestamp(adm["dischtime"])
    full = render_events(adm, ev, start, end, max_tokens=10**7)
    small = render_events(adm, ev, start, end, max_tokens=800)
    assert not full.truncated and full.n_events_shown == len(ev)
    assert small.truncated and 0 < small.n_events_shown < len(ev) and small.n_tokens <= 800
    # left truncation: what is kept is exactly the newest events, whole minutes only
    assert small.event_ids == full.event_ids[-small.n_events_shown:]
    first_shown = min(r["_minute"] for r in small.shown)
    assert small.visible_after < first_shown
    assert not any(small.visible_after < r["_minute"] < first_shown for r in full.shown)
    assert small.covers(first_shown, end) and not small.covers(start, end)
    assert "earlier events omitted" in small.text and "## Lab results [" in small.text
    # deterministic, whatever the input row order
    again = render_events(adm, ev.sample(frac=1, random_state=3), start, end, max_tokens=800)
    assert again.text == small.text
    compact = render_events(adm, ev, start, end, fmt="compact", max_tokens=800)
    line = compact.text.splitlines()[-1]
    assert line.count(" | ") >= 3 and "| lab |" in line


def test_render_never_shows_end_times_or_events_past_the_window(admission_events):
    adm, ev = admission_events
    start = pd.Timestamp(adm["admittime"]).floor("min")
    cut = start + pd.Timedelta(hours=24)
    r = render_events(adm, ev, start, cut, max_tokens=10**7)
    assert all(e["event_time"] < cut for e in r.shown)
    later = ev[ev["event_time"] >= cut]["event_time"].dt.strftime("%Y-%m-%d %H:%M")
    assert not any(f"[{t}]" in r.text for t in later)


@pytest.mark.parametrize("raw", RECORDED_TINY_OUTPUTS)
def test_recorded_tiny_model_outputs_are_rejected(raw):
    with pytest.raises(Rejected) as exc:
        parse_json_object(raw)
    assert exc.value.reason in ("empty_output", "not_json")


@pytest.mark.parametrize("raw,reason", [
    ('{"instruction": "What was given?"}', "missing_field"),
    ('{"instruction": "", "answer": "aspirin"}', "empty_field"),
    ('{"instruction": "What was given?", "answer": 3}', "wrong_type"),
    ('{"instruction": "What was given? <|im_end|>", "answer": "aspirin"}', "template_leak"),
    ('{"instruction": "aspirin", "answer": "Aspirin"}', "answer_equals_instruction"),
    ('{"instruction": "Q?", "answer": "' + "x" * 3000 + '"}', "too_long"),
])
def test_malformed_outputs_rejected_with_reason(raw, reason):
    with pytest.raises(Rejected) as exc:
        check_instruction_answer(parse_json_object(raw), NOTE)
    assert exc.value.reason == reason


def test_valid_outputs_kept_even_with_chatter_and_fences():
    raw = 'Sure! Here it is:\n```json\n{"instruction": "Which drugs were started?", "answer": "aspirin; heparin"}\n```'
    assert check_instruction_answer(parse_json_object(raw), NOTE) == ("Which drugs were started?", "aspirin; heparin")


def test_note_task_specific_filters():
    ok = {"instruction": "List the medications.", "answer": "aspirin; heparin"}
    assert NoteQA.check("named_entity_recognition", ok, NOTE, False, 2000)[1] == "aspirin; heparin"
    with pytest.raises(Rejected, match="entity_not_in_note"):
        NoteQA.check("named_entity_recognition", {"instruction": "List the medications.", "answer": "aspirin; warfarin"},
                     NOTE, False, 2000)
    with pytest.raises(Rejected, match="abbreviation_not_in_note"):
        NoteQA.check("abbreviation_expansion", {"instruction": "Expand.", "answer": "CKD: chronic kidney disease"},
                     NOTE, False, 2000)
    unans = {"instruction": "What was her potassium?", "answer": UNANSWERABLE}
    assert NoteQA.check("question_answering", unans, NOTE, True, 2000)[1] == UNANSWERABLE
    with pytest.raises(Rejected, match="unanswerable_mismatch"):
        NoteQA.check("question_answering", {"instruction": "What was her potassium?", "answer": "4.1"}, NOTE, True, 2000)
    with pytest.raises(Rejected, match="unexpected_unanswerable"):
        NoteQA.check("question_answering", unans, NOTE, False, 2000)


def test_note_outputs_copying_the_worked_example_answer_are_rejected():
    """SmolLM2-135M copied the few-shot answer (about another note) in 5 of 14 demo note outputs."""
    note = "Pneumonia treated with ceftriaxone. Creatinine rose to 1.9, so lisinopril was held and later restarted."
    shot = {"instruction": "Why was lisinopril held?", "answer": "Because of acute kidney injury (creatinine 1.9)."}
    copied = {"instruction": "Why was the ACE inhibitor held?",
              "answer": "Because of acute kidney injury (creatinine 1.9)"}
    with pytest.raises(Rejected) as r:
        NoteQA.check("question_answering", copied, note, False, 2000, shots=[shot])
    assert r.value.reason == "copies_example"
    own = {"instruction": "Why was lisinopril held?", "answer": "Creatinine rose to 1.9."}
    assert NoteQA.check("question_answering", own, note, False, 2000, shots=[shot])[1] == own["answer"]
    unans = {"instruction": "What was the blood type?", "answer": UNANSWERABLE}
    assert NoteQA.check("question_answering", unans, note, True, 2000,
                        shots=[{"instruction": "x", "answer": UNANSWERABLE}])[1] == UNANSWERABLE


def test_paraphrase_filter_keeps_meaning_and_never_touches_the_answer():
    q, suffix = split_question("What was the value of Heart Rate (vital sign) at 2150-02-05 06:00? Give it in bpm.")
    assert suffix == " Give it in bpm."
    good = "At 2150-02-05 06:00, what heart rate (vital sign) value was recorded?"
    assert check_paraphrase(q, good, "88") == good
    for text, reason in [("", "empty_output"), (q, "unchanged"),
                         ("What was the heart rate at 2150-02-05?", "lost_protected_span"),
                         ("Heart rate at 2150-02-05 06:00 was 88, right?", "leaks_answer"),
                         ("What was it? And at 2150-02-05 06:00?", "not_one_question"),
                         ("Line one?\nline two", "multiple_lines")]:
        with pytest.raises(Rejected) as exc:
            check_paraphrase(q, text, "88")
        assert exc.value.reason == reason, text


def test_rouge5_matches_rouge_score_and_flags_copies():
    from rouge_score import rouge_scorer

    train = [NOTE, "A completely different text about a knee replacement in an older man with arthritis pain."]
    generated = [NOTE, "She had chest pain; troponin was elevated and aspirin and heparin were given at once."]
    priv = privacy_stats(generated, train, ["n1", "n2"])
    ref = rouge_scorer.RougeScorer(["rouge5"]).score(train[0], generated[1])["rouge5"].recall
    assert priv[1]["nearest_rouge5_recall"][0] == pytest.approx(ref, abs=1e-4)
    assert priv[0]["max_rouge5_recall"] == 1.0 and priv[0]["nearest_train_ids"][0] == "n1"
    assert priv[0]["frac_8grams_in_train"] == 1.0 and priv[1]["frac_8grams_in_train"] < 0.5
    fid = fidelity_stats(generated, train)
    assert fid["n_generated"] == 2 and 0 < fid["vocab_jaccard"] <= 1


def test_config_errors_are_clear(tmp_path):
    from synthesis.config import load_synthesis_config

    with pytest.raises(ConfigError, match="unknown task"):
        load_synthesis_config("synthesis/configs/demo.yaml", ["tasks.nope.quota=1"])
    with pytest.raises(ConfigError, match="tasks.note_qa"):
        load_synthesis_config("synthesis/configs/demo.yaml", ["generator=null", "render.tokenizer=null"])
    with pytest.raises(ConfigError, match="render.tokenizer: generator needs a local generator"):
        load_synthesis_config("synthesis/configs/demo.yaml", ["generator.llm.backend=openai",
                                                              "generator.llm.base_url=http://127.0.0.1:9/v1"])
    with pytest.raises(ConfigError, match="unknown event type"):
        load_synthesis_config("synthesis/configs/demo.yaml", ["render.event_types=[labs]"])
    with pytest.raises(ConfigError, match="quota"):
        load_synthesis_config("synthesis/configs/demo.yaml", ["tasks.template_qa.quota=-1"])


def test_cli_prints_error_without_traceback(capsys):
    from synthesis.cli import main

    assert main(["--config", "does/not/exist.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


@pytest.mark.parametrize("budget", [200, 800, 6000, 40000])
def test_lazy_dataframe_rendering_equals_full_conversion(admission_events, budget):
    from synthesis.render import prepare_events

    adm, ev = admission_events
    start, end = pd.Timestamp(adm["admittime"]).floor("min"), pd.Timestamp(adm["dischtime"])
    lazy = render_events(adm, ev, start, end, max_tokens=budget)       # converts newest rows in growing chunks
    full = render_events(adm, prepare_events(ev), start, end, max_tokens=budget)
    assert lazy.text == full.text and lazy.event_ids == full.event_ids
    assert lazy.visible_after == full.visible_after and lazy.n_events == full.n_events == len(ev)


def test_sampling_modes_are_deterministic_and_do_what_they_say():
    from synthesis.registry import take_quota
    from synthesis.tasks.risk_prediction import _sample

    rows = [{"instruction_id": f"r{i}", "answer": "yes" if i % 10 == 0 else "no", "template_id": f"t{i % 3}"}
            for i in range(1000)]  # 10 % positives
    bal = _sample(rows, 100, "balanced", seed=0)
    assert [r["answer"] for r in bal].count("yes") == 50 == [r["answer"] for r in bal].count("no")
    inv = _sample(rows, 100, "inverse_frequency", seed=0)
    nat = _sample(rows, 100, "natural", seed=0)
    n_pos = lambda rs: sum(r["answer"] == "yes" for r in rs)  # noqa: E731
    assert len(inv) == len(nat) == 100 and n_pos(inv) > 2 * n_pos(nat)  # minority up-weighted
    assert _sample(list(reversed(rows)), 100, "inverse_frequency", seed=0) == inv  # order-independent
    assert _sample(rows, 100, "inverse_frequency", seed=1) != inv                  # seed matters
    rr = take_quota(rows, 30, seed=0, group_key="template_id")
    assert sorted(r["template_id"] for r in rr).count("t0") == 10                # round-robin over templates


def test_bad_rows_and_missing_warehouse_fail_clearly(tmp_path, monkeypatch, capsys):
    from ehrforge.errors import InputDataError
    from synthesis.cli import main, validate_rows

    rows = pd.DataFrame([{"instruction_id": "a", "split": "train", "instruction": "Q?", "answer": "", "answer_type": "text",
                          "lineage": "{}", "task": "t", "task_version": "1"}] * 2)
    with pytest.raises(InputDataError, match="duplicate instruction_id.*empty answer"):
        validate_rows(rows)
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(tmp_path / "absent.duckdb"))
    assert main(["--config", "synthesis/configs/demo.yaml", "--quiet"]) == 2
    assert "make build" in capsys.readouterr().err and not (tmp_path / "absent.duckdb").exists()
