"""The dbt source tests on synthesis.* pass against a synthesized demo warehouse (they are off by default because
the tables exist only after `make synthesize`)."""

import json
import os
from pathlib import Path


def test_dbt_source_tests_pass_on_synthesized_warehouse(synthesized, monkeypatch):
    from ehrforge.build import run_dbt

    path, *_ = synthesized
    monkeypatch.setenv("EHRFORGE_DUCKDB", str(path))
    assert run_dbt(["test", "--select", "source:synthesis", "--vars", "{check_synthesis: true}", "--quiet"])
    results = json.loads((Path(os.environ["DBT_TARGET_PATH"]) / "run_results.json").read_text())["results"]
    results = [r for r in results if r["unique_id"].startswith("test.")]  # not the on-run hooks
    names = {r["unique_id"].split(".")[2] for r in results}
    assert len(results) >= 8 and all(r["status"] == "pass" for r in results)
    assert any("relationships_synthesis_instructions_subject_id" in n for n in names)
