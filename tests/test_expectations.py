"""GX suites over the real demo marts: the clean demo passes, deliberately broken copies fail the right checks.

    MIMIC_ROOT=../shared/data/mimic-iv-demo .venv/bin/python -m pytest tests/test_expectations.py -q

Each broken-input test mutates a private copy of the demo warehouse with SQL (warehouse_copy), validates only
the suite concerned, once, with small samples, and asserts which expectations fail and what their messages say.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import duckdb
import pandas as pd
import pytest

from ehrforge import warehouse
from expectations.config import Settings, load_ranges
from expectations.run import RESULTS_TABLE, main, run_expectations

SMALL = Settings(sample_rows=5_000, item_sample_rows=500)


def _validate(path, suite: str):
    with warehouse.session(path) as con:
        return run_expectations(con, SMALL, [suite], docs_dir=None)


def _mutate(path, *sql: str) -> None:
    con = duckdb.connect(str(path))
    for stmt in sql:
        con.execute(stmt)
    con.close()


def _failed(outcome) -> set[str]:
    r = outcome.results
    return set(r.loc[r["success"] == False, "expectation_name"])  # noqa: E712


@pytest.mark.slow
def test_demo_passes_results_in_sql_and_data_docs(warehouse_copy, tmp_path, capsys):
    docs = tmp_path / "docs"
    assert main(["--docs-dir", str(docs)]) == 0
    out = capsys.readouterr().out
    assert "instructions" in out and "not present" in out

    con = duckdb.connect(str(warehouse_copy), read_only=True)
    res = con.execute(f"select * from {RESULTS_TABLE}").df()
    run_id = res["run_id"].unique()
    assert len(run_id) == 1 and run_id[0].startswith("expectations-")
    assert set(res["suite"]) == {"cohort", "events", "notes", "splits", "outcomes", "instructions"}
    assert res[(res["severity"] == "critical") & (res["success"] == False)].empty  # noqa: E712
    assert set(res["severity"]) == {"critical", "warn"}
    assert res.loc[res["suite"] == "instructions", "status"].tolist() == ["not_present"]
    # every reviewed itemid was checked on real demo values, and its observed value is stored
    items = load_ranges()["items"]
    ranged = res[res["expectation_name"].str.startswith("item_range.")]
    assert set(ranged["expectation_name"]) == {f"item_range.{i}" for i in items}
    assert (ranged["element_count"] > 0).all()
    median = res[res["expectation_name"] == "item_median.50931"].iloc[0]
    assert 70 <= json.loads(median["observed_value"]) <= 250  # glucose median in mg/dL
    assert con.execute(f"select count(*) from meta.runs where run_id = '{run_id[0]}' and status = 'succeeded'"
                       ).fetchone()[0] == 1
    con.close()

    index = docs / "index.html"
    assert index.is_file()
    html = index.read_text()
    assert "events.item_sample" in html and "notes.profile" in html

    # re-validating the same build with the same settings replaces that run's rows
    assert main(["--suite", "splits", "--no-docs"]) == 0
    assert main(["--suite", "splits", "--no-docs"]) == 0
    con = duckdb.connect(str(warehouse_copy), read_only=True)
    per_run = con.execute(f"select run_id, count(*) from {RESULTS_TABLE} group by run_id").fetchall()
    con.close()
    assert len(per_run) == 2
    assert dict(per_run)[run_id[0]] == len(res)


@pytest.fixture(scope="module")
def broken_events(demo_warehouse, tmp_path_factory):
    """One validation of the events suite over a copy with three independent faults: glucose reported x1000
    (a unit change nobody converted), every sodium event duplicated, outputevents loaded 0 rows (an
    interrupted download)."""
    path = tmp_path_factory.mktemp("broken-events") / "warehouse.duckdb"
    shutil.copy(demo_warehouse, path)
    _mutate(path,
            "update marts.fct_events set value_num = value_num * 1000 where itemid = '50931'",
            "insert into marts.fct_events select * from marts.fct_events where itemid = '50983'",
            "delete from marts.fct_events where source_table = 'outputevents'")
    return _validate(path, "events")


@pytest.fixture(scope="module")
def broken_notes_outcomes(demo_warehouse, tmp_path_factory):
    """One validation of the notes and outcomes suites over a copy whose notes are all empty strings and whose
    outcomes mart lost a column."""
    path = tmp_path_factory.mktemp("broken-notes") / "warehouse.duckdb"
    shutil.copy(demo_warehouse, path)
    _mutate(path,
            "update marts.fct_notes set text = '', clean_text = ''",
            "alter table marts.fct_outcomes drop column outcome_time")
    with warehouse.session(path) as con:
        return run_expectations(con, SMALL, ["notes", "outcomes"], docs_dir=None)


def test_unit_shift_fails_range_of_that_lab_only(broken_events):
    outcome = broken_events
    assert outcome.exit_code == 1
    rng = outcome.result("item_range.50931")
    assert rng["success"] == False and rng["severity"] == "critical"  # noqa: E712
    assert 'itemid == "50931"' in rng["message"] and "Glucose" in rng["message"]
    assert "marts.fct_events value_num" in rng["message"]
    assert rng["unexpected_percent"] > 95
    examples = json.loads(rng["observed_value"])["examples"]
    assert examples and all(float(e.split("=")[1].split(" ")[0]) > 2000 for e in examples)
    assert outcome.result("item_median.50931")["success"] == False  # noqa: E712
    failed = _failed(outcome)
    assert not {n for n in failed if n.startswith("item_range.") and n != "item_range.50931"}
    assert outcome.result("item_units")["success"] == True  # noqa: E712 (the unit string did not change)


def test_duplicated_events_fail_uniqueness_and_source_ratio(broken_events):
    outcome = broken_events
    dup = outcome.result("unique_event_id")
    assert dup["success"] == False and json.loads(dup["observed_value"]) == 3007  # noqa: E712 (sodium rows)
    assert "n_duplicate_event_id: observed 3007" in dup["message"]
    ratio = outcome.result("source_rows_ratio.labevents")
    assert ratio["success"] == False and json.loads(ratio["observed_value"]) > 1.0  # noqa: E712
    assert 'row_key == "labevents"' in ratio["message"]
    assert outcome.result("source_rows_ratio.chartevents")["success"] == True  # noqa: E712
    assert outcome.result("item_range.50983")["success"] == True  # noqa: E712 (duplicates, not bad values)


def test_zero_rows_from_a_source_fail(broken_events):
    outcome = broken_events
    present = outcome.result("source_rows_present.outputevents")
    assert present["success"] == False and json.loads(present["observed_value"]) == 0  # noqa: E712
    assert "source_rows_ratio.outputevents" in _failed(outcome)
    assert outcome.result("source_rows_present.chartevents")["success"] == True  # noqa: E712
    # the three faults fail exactly these critical checks, nothing else
    assert set(outcome.failed_critical["expectation_name"]) == {
        "item_range.50931", "unique_event_id", "source_rows_ratio.labevents", "source_rows_present.outputevents",
        "source_rows_ratio.outputevents", "sample_unique_event_id"}


def test_empty_notes_fail(broken_notes_outcomes):
    outcome = broken_notes_outcomes
    assert outcome.exit_code == 1
    empty = outcome.result("empty_text_share")
    assert empty["success"] == False and json.loads(empty["observed_value"]) == 1.0  # noqa: E712
    assert "marts.fct_notes" in empty["message"] and "frac_empty_text" in empty["message"]
    row = outcome.result("note_text_not_empty")
    assert row["success"] == False and row["unexpected_count"] == row["element_count"] == 275  # noqa: E712
    assert "text_chars=0" in row["message"]
    assert {"empty_clean_text_share", "discharge_note_median_length"} <= _failed(outcome)
    assert outcome.result("unique_note_id")["success"] == True  # noqa: E712


def test_dropped_column_fails_schema_check_naming_it(broken_notes_outcomes):
    outcome = broken_notes_outcomes
    schema = outcome.result("schema.marts.fct_outcomes")
    assert schema["success"] == False and schema["severity"] == "critical"  # noqa: E712
    assert "outcome_time TIMESTAMP" in schema["message"] and "marts.fct_outcomes" in schema["message"]
    # the frame that reads the column is reported as not computed, not silently skipped
    leak = outcome.result("outcome_after_prediction")
    assert leak["status"] == "error" and leak["success"] == False and "outcome_time" in leak["message"]  # noqa: E712
    # checks that do not need the column still ran
    assert outcome.result("unique_outcome_id")["status"] == "passed"
    assert outcome.result("schema.marts.fct_notes")["status"] == "passed"


def _instructions(con) -> pd.DataFrame:
    """A small synthesis.instructions in the synth branch's schema, from real demo outcomes."""
    df = con.execute("""
        select 'demo-' || o.outcome_id as instruction_id, 'demo' as dataset, 'risk_prediction' as task,
               '1' as task_version, s.split, o.subject_id, o.hadm_id,
               'Admission ' || o.hadm_id || ', first 24 h of events.' as context,
               'Will the patient die in hospital? Answer yes or no.' as instruction,
               case when o.label then 'yes' else 'no' end as answer, 'yes_no' as answer_type,
               json_object('source_marts', ['marts.fct_outcomes'], 'outcome_id', o.outcome_id)::varchar as lineage,
               'in_hospital_mortality' as template_id, md5(o.outcome_id) as prompt_hash, 'template' as generator_model,
               42::bigint as seed
        from marts.fct_outcomes o join marts.dim_splits s using (subject_id)
        where o.task = 'in_hospital_mortality' order by o.outcome_id limit 40
    """).df()
    df["task_version"] = df["task_version"].astype(str)
    return df


def test_instructions_suite(warehouse_copy):
    with warehouse.session(warehouse_copy) as con:
        df = _instructions(con)
        run = warehouse.start_run(con, "synthesis-test", {"n": len(df)})
        ok = df.copy()
        warehouse.write_table(con, "synthesis.instructions", ok, run)
        good = run_expectations(con, SMALL, ["instructions"], docs_dir=None)
        assert good.exit_code == 0, good.failed_critical["message"].tolist()
        assert good.result("split_matches_patient")["element_count"] == 40

        bad = df.copy()
        bad.loc[0, "answer"] = "  "
        bad.loc[1, "split"] = "train" if bad.loc[1, "split"] != "train" else "test"
        bad.loc[2, "lineage"] = None
        warehouse.write_table(con, "synthesis.instructions", bad, run)
        outcome = run_expectations(con, SMALL, ["instructions"], docs_dir=None)
    assert outcome.exit_code == 1
    assert _failed(outcome) == {"answer_not_empty", "split_matches_patient", "lineage_present"}
    assert bad.loc[0, "instruction_id"] in outcome.result("answer_not_empty")["message"]
    assert bad.loc[1, "instruction_id"] in outcome.result("split_matches_patient")["message"]
    assert outcome.result("lineage_present")["unexpected_count"] == 1


def test_missing_or_locked_warehouse_is_a_clear_error(tmp_path, monkeypatch, capsys, warehouse_copy):
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(tmp_path / "nope.duckdb"))
    assert main(["--no-docs"]) == 2
    assert "does not exist" in capsys.readouterr().err

    monkeypatch.setenv("EHRFORGE_DUCKDB", str(warehouse_copy))
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(warehouse_copy)!r}); "
                               "print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["--no-docs", "--suite", "splits"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "locked" in err
    finally:
        holder.kill()
        holder.wait()


def test_unknown_suite_and_bad_ranges_are_clear_errors(tmp_path, warehouse_copy):
    from ehrforge.errors import ConfigError

    with warehouse.session(warehouse_copy) as con, pytest.raises(ConfigError, match="unknown suite"):
        run_expectations(con, SMALL, ["nope"], docs_dir=None, write=False)
    bad = tmp_path / "physiological_ranges.csv"
    header = "itemid,source_table,label,unit,min_value,max_value,median_low,median_high\n"
    bad.write_text(header + "50931,labevents,Glucose,mg/dL,10,1,70,250\n")
    with pytest.raises(ConfigError, match="50931.*min_value < max_value"):
        load_ranges(bad)
    bad.write_text(header.replace(",unit", "") + "50931,labevents,Glucose,0,2000,70,250\n")
    with pytest.raises(ConfigError, match=r"lacks column\(s\) \['unit'\]"):
        load_ranges(bad)


def test_messages_name_column_condition_observed_and_expectation():
    from expectations.core import Frame
    from expectations.run import _message, _observed

    frame = Frame("events", "item_sample", "marts.fct_events", "sample", "", "select 1 as row_key", [])
    kwargs = {"column": "value_num", "min_value": 0.0, "max_value": 2000.0, "mostly": 0.99,
              "row_condition": {"column": {"name": "itemid"}, "operator": "==", "parameter": "50931",
                                "type": "comparison"}}
    result = {"element_count": 4, "unexpected_count": 3, "unexpected_percent": 75.0,
              "partial_unexpected_index_list": [{"value_num": 121000.0, "row_key": "e1"}]}
    observed, text = _observed("expect_column_values_to_be_between", kwargs, result)
    assert observed["unexpected_count"] == 3 and observed["examples"] == ["value_num=121000 (row_key e1)"]
    msg = _message(frame, {"name": "item_range.50931", "severity": "critical", "why": "glucose range"},
                   "expect_column_values_to_be_between", kwargs, False, text)
    assert msg.startswith("FAILED [critical] item_range.50931: marts.fct_events value_num where itemid == \"50931\"")
    assert "3 of 4 rows unexpected (75%)" in msg and "between 0 and 2000 for at least 99.0% of rows" in msg

    observed, text = _observed("expect_column_distinct_values_to_contain_set", {"value_set": ["a", "b"]},
                               {"observed_value": None, "missing_count": 1, "partial_missing_list": ["b"]})
    assert observed == {"missing": ["b"]} and text == "missing ['b']"
    observed, text = _observed("expect_column_max_to_be_between", {}, {"observed_value": 0.25})
    assert observed == 0.25 and text == "observed 0.25"
