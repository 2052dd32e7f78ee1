"""ACES (es-aces) task configs for the outcome tasks, run on the MEDS export of the demo warehouse, reproduce
marts.fct_outcomes: every instance and label, except the rows whose definitions cannot match (named reasons)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("aces", reason="the ACES configs need the `meds` extra: pip install -e '.[meds]'")
pytest.importorskip("meds", reason="the MEDS export needs the `meds` extra: pip install -e '.[meds]'")


@pytest.fixture(scope="module")
def aces_run(demo_warehouse, export, tmp_path_factory):
    """ACES over the shared export (tests/meds/conftest.py: 30-subject shards, so ACES runs once per shard and a
    subject's windows must not depend on the sharding)."""
    from ehrforge import warehouse
    from meds_export import aces

    out = tmp_path_factory.mktemp("aces") / "aces"
    with warehouse.session(demo_warehouse, read_only=True) as con:
        results = aces.run(con, export.out, out)
    return out, {r.task: r for r in results}


def test_every_outcome_task_has_an_aces_config(demo_warehouse):
    import duckdb

    from meds_export import aces

    with duckdb.connect(str(demo_warehouse), read_only=True) as con:
        tasks = {t for (t,) in con.execute("select distinct task from marts.fct_outcomes").fetchall()}
    assert tasks == set(aces.TASKS)
    for task in tasks:
        assert aces.load_config(task).label_window is not None


def test_aces_reproduces_our_labels_where_the_definitions_match(aces_run):
    _, results = aces_run
    assert set(results) == {"in_hospital_mortality", "los_gt_3d", "los_gt_7d", "readmission_30d", "icu_mortality"}
    for task, r in results.items():
        assert r.n_ours > 0 and r.n_aces > 0, task
        # every difference has a reason the warehouse shows; nothing else differs
        assert r.unexplained == [], (task, r.unexplained[:3])
        assert r.n_equal == r.n_ours - len(r.only_ours) - len(r.disagree), task
    # on the demo: LOS (negated config labels), ICU mortality and readmission instances match one for one
    for task in ("los_gt_3d", "los_gt_7d", "icu_mortality"):
        assert results[task].reproduced, task
    assert results["readmission_30d"].only_ours == [] and results["readmission_30d"].disagree == []
    # the known difference: deaths dated after the (midnight) discharge. Ours: an in-hospital death (no
    # readmission label); ACES: alive at discharge (label 0, and a readmission instance)
    died_late = {r["hadm_id"] for r in results["in_hospital_mortality"].disagree}
    assert died_late and all(r["ours"] and not r["aces"] for r in results["in_hospital_mortality"].disagree)
    assert {r["hadm_id"] for r in results["readmission_30d"].only_aces} == died_late
    assert {r["reason"] for t in results.values() for r in t.differences} == {"death_after_discharge"}


def test_labels_are_written_in_the_meds_label_schema(aces_run, demo_warehouse):
    import duckdb
    import meds
    import pyarrow.parquet as pq

    from ehrforge.atomic import is_complete

    out, results = aces_run
    assert is_complete(out)
    for task, r in results.items():
        table = pq.read_table(out / task / "0.parquet")
        meds.LabelSchema.validate(table)
        assert table.num_rows == r.n_aces
    summary = {s["task"]: s for s in json.loads((out / "comparison.json").read_text())}
    assert summary["los_gt_3d"]["reproduced"] and summary["in_hospital_mortality"]["n_unexplained"] == 0
    # the negated LOS config: its labels equal fct_outcomes' los_gt_3d (not its complement)
    with duckdb.connect(str(demo_warehouse), read_only=True) as con:
        n_pos = con.execute("select count(*) filter (where label) from marts.fct_outcomes "
                            "where task = 'los_gt_3d'").fetchone()[0]
    assert pq.read_table(out / "los_gt_3d" / "0.parquet").column("boolean_value").to_pylist().count(True) == n_pos


def test_bad_input_is_named(demo_warehouse, tmp_path):
    from ehrforge import warehouse
    from ehrforge.errors import InputDataError
    from meds_export import aces

    with pytest.raises(InputDataError, match="not a complete MEDS export.*make export-meds"):
        with warehouse.session(demo_warehouse, read_only=True) as con:
            aces.run(con, tmp_path / "nothing", tmp_path / "out")
    with pytest.raises(InputDataError, match="no ACES config for task 'sepsis'.*meds_export/aces/"):
        aces.load_config("sepsis")
    assert not (tmp_path / "out").exists()
