"""Every mart follows the recipe in docs/extending.md: a description that opens with its grain and a primary key
tested unique and not null (dbt's own tests or a unique_combination test over its key columns)."""

import json
import os
from pathlib import Path


def _manifest(dbt_env) -> dict:
    return json.loads((Path(os.environ["DBT_TARGET_PATH"]) / "manifest.json").read_text())


def test_every_mart_states_its_grain_and_tests_its_key(demo_warehouse, dbt_env):
    manifest = _manifest(dbt_env)
    marts = {uid: n for uid, n in manifest["nodes"].items()
             if n["resource_type"] == "model" and n["fqn"][1:2] == ["marts"]}
    assert marts
    tests_by_model: dict[str, set[tuple[str, str]]] = {uid: set() for uid in marts}
    for n in manifest["nodes"].values():
        if n["resource_type"] != "test" or not n.get("test_metadata"):
            continue
        for parent in n["depends_on"]["nodes"]:
            if parent in tests_by_model:
                tests_by_model[parent].add((n["test_metadata"]["name"], n.get("column_name") or ""))
    problems = []
    for uid, node in sorted(marts.items()):
        if not node["description"].startswith("One row per"):
            problems.append(f"{node['name']}: description must open with its grain ('One row per ...')")
        tests = tests_by_model[uid]
        keyed = any(("unique", c) in tests and ("not_null", c) in tests for _, c in tests if c) or any(
            name == "unique_combination" for name, _ in tests)
        if not keyed:
            problems.append(f"{node['name']}: no key tested unique + not_null")
    assert not problems, "; ".join(problems)
