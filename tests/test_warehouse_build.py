"""The warehouse builds on the real demo and its marts hold what the issue asks for."""

import duckdb


def test_marts_built(demo_warehouse):
    con = duckdb.connect(str(demo_warehouse), read_only=True)
    counts = dict(con.execute(
        "select table_name, estimated_size from duckdb_tables() where schema_name = 'marts'"
    ).fetchall())
    for t in ["dim_admissions", "dim_icustays", "dim_splits", "fct_events", "fct_notes", "fct_note_sections", "fct_outcomes"]:
        assert t in counts
    assert con.execute("select count(*) from marts.dim_admissions").fetchall()[0][0] == 275
    assert con.execute("select count(*) from marts.dim_splits").fetchall()[0][0] == 100
