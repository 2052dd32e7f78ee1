"""The dbt source tests on synthesis.* pass against a synthesized demo warehouse (they run in every `dbt build`:
the tables are declared with meta.create_if_missing, so they exist, empty, before the first synthesis)."""

import json
import os
from pathlib import Path

import pytest


@pytest.mark.slow  # 4-8 s (a dbt invocation / extra training run): keeps the default run under 4 min
def test_dbt_source_tests_pass_on_synthesized_warehouse(chain_copy):
    from ehrforge.build import run_dbt

    assert run_dbt(["test", "--select", "source:synthesis", "--quiet"])
    results = json.loads((Path(os.environ["DBT_TARGET_PATH"]) / "run_results.json").read_text())["results"]
    results = [r for r in results if r["unique_id"].startswith("test.")]  # not the on-run hooks
    names = {r["unique_id"].split(".")[2] for r in results}
    assert len(results) >= 8 and all(r["status"] == "pass" for r in results)
    assert any("relationships_synthesis_instructions_subject_id" in n for n in names)
