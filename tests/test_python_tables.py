"""One policy for the tables Python writes (docs/extending.md, "A table Python writes"): each is declared once in
dbt source YAML with its column types; dbt's build and ehrforge.tables create the same empty table from it."""

import duckdb
import pytest

from ehrforge import tables, warehouse
from ehrforge.errors import WarehouseError


def _written_by_jobs() -> set[str]:
    from ehrforge.event_embeddings import TABLE as EVENT_VECTORS
    from ehrforge.llm.cache import TABLE as LLM_CALLS
    from evaluation.tables import EVALUATION_TABLES
    from expectations.run import RESULTS_TABLE
    from synthesis import EXTRA_TABLES, INSTRUCTIONS_TABLE
    from training.records import CURVE_TABLE, RUNS_TABLE

    return {LLM_CALLS, INSTRUCTIONS_TABLE, *EXTRA_TABLES, RUNS_TABLE, CURVE_TABLE, *EVALUATION_TABLES, RESULTS_TABLE,
            EVENT_VECTORS}


def _columns(con, table: str) -> list[tuple[str, str]]:
    schema, name = table.split(".")
    return con.execute("select column_name, lower(data_type) from information_schema.columns "
                       "where table_schema = ? and table_name = ? order by ordinal_position", [schema, name]).fetchall()


def test_every_table_a_job_writes_is_declared_once():
    assert _written_by_jobs() <= set(tables.declared())


def test_a_fresh_build_creates_each_declared_table_as_python_would(demo_warehouse):
    """dbt's hook and ehrforge.tables.ensure make the same columns and types from the one declaration."""
    mem = duckdb.connect()
    tables.ensure(mem)
    con = duckdb.connect(str(demo_warehouse), read_only=True)
    try:
        for table in sorted(tables.declared()):
            assert _columns(con, table) == _columns(mem, table), table
            assert [c for c, _ in _columns(con, table)] == tables.columns(table)
    finally:
        con.close()


@pytest.fixture
def own_declaration(tmp_path, monkeypatch):
    """The recipe followed with a table of the test's own, in a dbt project folder of its own."""
    (tmp_path / "models" / "sources").mkdir(parents=True)
    (tmp_path / "models" / "sources" / "_probe__sources.yml").write_text("""
version: 2
sources:
  - name: probe
    schema: probe
    tables:
      - name: token_counts
        meta: {create_if_missing: true}
        columns:
          - {name: run_id, data_type: varchar}
          - {name: created_at, data_type: timestamp}
          - {name: code_version, data_type: varchar}
          - {name: config_hash, data_type: varchar}
          - {name: task, data_type: varchar}
          - {name: n_tokens, data_type: bigint}
      - name: not_python_written
        columns: [{name: x}]
""")
    monkeypatch.setattr(tables, "DBT_PROJECT_DIR", tmp_path)
    tables.declared.cache_clear()
    yield "probe.token_counts"
    tables.declared.cache_clear()


def test_write_table_creates_a_declared_table_from_its_declaration(own_declaration):
    con = duckdb.connect()
    run = warehouse.start_run(con, job="probe", config={"x": 1})
    # the first rows have no n_tokens at all: the column still gets its declared type, not DuckDB's NULL type
    warehouse.write_table(con, own_declaration, tables.frame(own_declaration, [{"task": "template_qa"}]), run)
    assert dict(_columns(con, own_declaration))["n_tokens"] == "bigint"
    assert tables.columns(own_declaration, with_run_columns=False) == ["task", "n_tokens"]
    assert set(tables.declared()) == {own_declaration}  # a source without create_if_missing is not Python's


def test_an_undeclared_column_is_refused_with_the_file_to_declare_it_in(own_declaration):
    with pytest.raises(WarehouseError, match=r"undeclared column\(s\) \['n_prompts'\].*_probe__sources.yml"):
        tables.frame(own_declaration, [{"task": "x", "n_prompts": 3}])
    con = duckdb.connect()
    run = warehouse.start_run(con, job="probe", config={"x": 1})
    df = tables.frame(own_declaration, [{"task": "x"}]).assign(n_prompts=3)
    with pytest.raises(WarehouseError, match=r"new: \['n_prompts'\].*declare the new ones in _probe__sources.yml"):
        warehouse.write_table(con, own_declaration, df, run)
    assert not warehouse.table_exists(con, own_declaration)  # one transaction: nothing half-written
