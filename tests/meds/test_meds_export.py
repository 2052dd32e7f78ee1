"""`make export-meds` on the real demo warehouse: the MEDS dataset validates against the `meds` package's schemas,
reconciles row for row with marts.fct_events (per event type and per code family), follows MEDS code conventions,
keeps each subject in one shard of its dim_splits split, and is written atomically."""

from __future__ import annotations

import re

import duckdb
import pytest

pytest.importorskip("meds", reason="the MEDS export needs the `meds` extra: pip install -e '.[meds]'")


@pytest.fixture(scope="module")
def con(demo_warehouse, export):
    """The warehouse (read-only) with the export's data, codes, splits and labels as views."""
    c = duckdb.connect(str(demo_warehouse), read_only=True)
    out = export.out
    c.execute(f"create temp view meds_data as select *, filename from read_parquet('{out}/data/*/*.parquet', "
              "filename = true)")
    c.execute(f"create temp view meds_codes as select * from read_parquet('{out}/metadata/codes.parquet')")
    c.execute(f"create temp view meds_splits as select * from read_parquet('{out}/metadata/subject_splits.parquet')")
    yield c
    c.close()


def test_every_file_validates_against_the_meds_schemas(export):
    import json

    import meds
    import pyarrow.parquet as pq

    from ehrforge.atomic import is_complete

    out = export.out
    assert is_complete(out)
    shards = sorted((out / meds.data_subdirectory).glob("*/*.parquet"))
    assert len(shards) == len(export.shards) >= 4  # 82 train subjects in shards of 30 -> 3, plus tuning, held_out
    for path in shards:
        meds.DataSchema.validate(pq.read_table(path))
    meds.CodeMetadataSchema.validate(pq.read_table(out / meds.code_metadata_filepath))
    meds.SubjectSplitSchema.validate(pq.read_table(out / meds.subject_splits_filepath))
    for path in sorted((out / "task_labels").glob("*/*.parquet")):
        meds.LabelSchema.validate(pq.read_table(path))
    meta = json.loads((out / meds.dataset_metadata_filepath).read_text())
    meds.DatasetMetadataSchema.validate(meta)
    assert meta["meds_version"] == meds.__version__ and meta["raw_source_id_columns"] == ["event_id"]


def test_rows_reconcile_with_fct_events_per_event_type(con):
    # every fct_events row is exported exactly once; the only rows without one are MEDS_BIRTH and the ICU stays' in
    # and out rows (from dim_icustays)
    n_events, n_distinct = con.execute("select count(*), count(distinct event_id) from meds_data "
                                       "where event_id is not null").fetchone()
    assert n_events == n_distinct == con.execute("select count(*) from marts.fct_events").fetchone()[0]
    assert con.execute("select count(*) from meds_data where event_id is null and code <> 'MEDS_BIRTH' "
                       "and not regexp_matches(code, '^ICU_(ADMISSION|DISCHARGE)//')").fetchone()[0] == 0
    per_type = con.execute("""
        select e.event_type, count(*) as n_mart, count(m.event_id) as n_meds,
               count(*) filter (where m.subject_id = e.subject_id and m.time = e.event_time) as n_same_subject_time
        from marts.fct_events e left join meds_data m using (event_id)
        group by 1 order by 1""").fetchall()
    assert len(per_type) == 17
    for event_type, n_mart, n_meds, n_same in per_type:
        assert n_mart == n_meds == n_same, event_type


@pytest.mark.parametrize("family, event_types", [
    ("LAB//%", ("lab", "chart")),
    ("DIAGNOSIS//ICD//%", ("diagnosis",)),
    ("PROCEDURE//ICD//%", ("procedure_icd",)),
    ("PROCEDURE//START//%", ("procedure_icu",)),
    ("HOSPITAL_ADMISSION//%", None),      # one per admission
    ("HOSPITAL_DISCHARGE//%", ("discharge",)),
    ("MEDS_DEATH", ("death",)),
    ("TRANSFER_TO//%", ("transfer",)),
    ("MEDICATION//START//%", ("prescription",)),
    ("INFUSION//%", ("input",)),
    ("SUBJECT_FLUID_OUTPUT//%", ("output",)),
    ("MICROBIOLOGY//%", ("microbiology",)),
    ("DATETIME//%", ("datetime",)),
    ("OMR//%", ("omr",)),
])
def test_code_families_count_like_their_event_types(con, family, event_types):
    n_meds = con.execute("select count(*) from meds_data where code like ?", [family]).fetchone()[0]
    if event_types is None:
        want = con.execute("select count(*) from marts.dim_admissions").fetchone()[0]
    else:
        want = con.execute("select count(*) from marts.fct_events where event_type in (select unnest(?))",
                           [list(event_types)]).fetchone()[0]
    assert n_meds == want > 0


def test_icu_stays_have_one_admission_and_one_discharge_row(con):
    # ICU_ADMISSION//<first careunit> at intime and ICU_DISCHARGE//<last careunit> at outtime, per dim_icustays row
    mismatched = con.execute("""
        with ins as (select subject_id, time, code from meds_data where code like 'ICU_ADMISSION//%'),
             outs as (select subject_id, time, code from meds_data where code like 'ICU_DISCHARGE//%')
        select (select count(*) from ins), (select count(*) from outs), count(*),
               count(*) filter (where not exists (select 1 from ins where ins.subject_id = i.subject_id
                                    and ins.time = i.intime and ins.code = 'ICU_ADMISSION//' || i.first_careunit)
                                 or not exists (select 1 from outs where outs.subject_id = i.subject_id
                                    and outs.time = i.outtime and outs.code = 'ICU_DISCHARGE//' || i.last_careunit))
        from marts.dim_icustays i""").fetchone()
    n_in, n_out, n_stays, n_missing = mismatched
    assert n_in == n_out == n_stays > 0 and n_missing == 0


def test_codes_follow_meds_conventions(con, export):
    cfg_unknown = "UNK"
    # labs: LAB//<itemid>//<unit>, the unit written UNK when MIMIC has none; value numeric where MIMIC has one
    bad = con.execute(f"""
        select count(*) from marts.fct_events e join meds_data m using (event_id)
        where e.event_type = 'lab' and (m.code <> 'LAB//' || e.itemid || '//' || coalesce(e.unit, '{cfg_unknown}')
              or m.numeric_value is distinct from cast(e.value_num as float))""").fetchone()[0]
    assert bad == 0
    assert con.execute("select count(*) from meds_data where code like 'LAB//%//UNK'").fetchone()[0] > 0
    # diagnoses: DIAGNOSIS//ICD//<9|10>//<code without dots, leading zeros kept>
    codes = [c for (c,) in con.execute("select distinct code from meds_data where code like 'DIAGNOSIS//%'").fetchall()]
    assert all(re.fullmatch(r"DIAGNOSIS//ICD//(9|10)//[0-9A-Z]+", c) for c in codes), codes[:5]
    assert any(c.startswith("DIAGNOSIS//ICD//9//0") for c in codes)  # leading zeros survive
    # one MEDS_BIRTH per subject, first in the subject's timeline, at 1 January of the birth year
    births = con.execute("""
        select count(*), count(distinct subject_id), bool_and(month(time) = 1 and day(time) = 1)
        from meds_data where code = 'MEDS_BIRTH'""").fetchone()
    assert births == (100, 100, True)
    first = con.execute("""
        select count(*) from (select subject_id, arg_min(code, time) as first_code from meds_data
                              where time is not null group by 1) where first_code <> 'MEDS_BIRTH'""").fetchone()[0]
    assert first == 0
    # age at admission = year(admittime) - birth year, for every admission
    assert con.execute("""
        select count(*) from marts.dim_admissions a join meds_data b on b.subject_id = a.subject_id
        and b.code = 'MEDS_BIRTH' where year(a.admittime) - year(b.time) <> a.age_at_admission""").fetchone()[0] == 0
    # codes metadata lists every code once, with a description
    assert con.execute("select count(*), count(distinct code), count(description) from meds_codes").fetchone() == (
        export.n_codes, export.n_codes, export.n_codes)
    assert con.execute("select count(*) from (select distinct code from meds_data) d anti join meds_codes using (code)"
                       ).fetchone()[0] == 0


def test_subjects_live_in_one_sorted_shard_of_their_split(con):
    one_shard = con.execute("select count(*) from (select subject_id from meds_data group by 1 "
                            "having count(distinct filename) > 1)").fetchone()[0]
    assert one_shard == 0
    wrong_split = con.execute("""
        select count(*) from (select distinct subject_id, filename from meds_data) f
        join marts.dim_splits s using (subject_id)
        where f.filename not like '%/data/' || case s.split when 'train' then 'train' when 'val' then 'tuning'
                                                    else 'held_out' end || '/%'""").fetchone()[0]
    assert wrong_split == 0
    assert con.execute("""
        select split, count(*) from meds_splits group by 1 order by 1""").fetchall() == con.execute("""
        select case split when 'train' then 'train' when 'val' then 'tuning' else 'held_out' end as s, count(*)
        from marts.dim_splits group by 1 order by 1""").fetchall()


def test_shard_rows_are_contiguous_and_time_ordered(export):
    import pyarrow.parquet as pq

    for rel in export.shards:
        t = pq.read_table(export.out / rel, columns=["subject_id", "time"]).to_pandas()
        runs = (t["subject_id"] != t["subject_id"].shift()).sum()
        assert runs == t["subject_id"].nunique(), rel                  # each subject is one block
        assert t.groupby("subject_id")["time"].apply(lambda s: s.is_monotonic_increasing).all(), rel


def test_task_labels_are_fct_outcomes(con, export):
    want = dict(con.execute("select task, count(*) from marts.fct_outcomes where label is not null group by 1"
                            ).fetchall())
    assert export.labels == want
    out = export.out
    diff = con.execute(f"""
        select count(*) from (
            select subject_id, prediction_time, label from marts.fct_outcomes where task = 'in_hospital_mortality'
            except
            select subject_id, prediction_time, boolean_value
            from read_parquet('{out}/task_labels/in_hospital_mortality/*.parquet'))""").fetchone()[0]
    assert diff == 0


def test_a_failed_export_leaves_the_previous_one_and_nothing_complete(demo_warehouse, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from ehrforge import warehouse
    from ehrforge.atomic import is_complete
    from meds_export.export import MedsExportConfig, export_meds

    out = tmp_path / "meds"
    stale = tmp_path / ".meds.tmp-999999"        # what a killed export leaves behind
    (stale / "data").mkdir(parents=True)
    calls = {"n": 0}
    real = pq.write_table

    def dies_on_third_file(table, where, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed mid-export")
        return real(table, where, **kw)

    with warehouse.session(demo_warehouse, read_only=True) as con:
        monkeypatch.setattr(pq, "write_table", dies_on_third_file)
        with pytest.raises(KeyboardInterrupt):
            export_meds(con, MedsExportConfig(out=str(out), task_labels=False))
        assert not out.exists() and not is_complete(out)
        assert not list(tmp_path.glob(".meds.tmp-*"))   # neither the stale nor the interrupted temp folder
        monkeypatch.setattr(pq, "write_table", real)
        first = export_meds(con, MedsExportConfig(out=str(out), task_labels=False))
        assert is_complete(out)
        monkeypatch.setattr(pq, "write_table", dies_on_third_file)
        calls["n"] = 0
        with pytest.raises(KeyboardInterrupt):
            export_meds(con, MedsExportConfig(out=str(out), task_labels=False))
    assert is_complete(out)                              # the earlier export is untouched
    assert sum(pq.read_metadata(out / rel).num_rows for rel in first.shards) == first.n_events


def test_an_event_type_without_a_code_is_named(warehouse_copy):
    from ehrforge import warehouse
    from ehrforge.errors import InputDataError
    from meds_export.export import MedsExportConfig, export_meds

    with warehouse.session(warehouse_copy) as con:
        con.execute("""insert into marts.fct_events by name
                       select * replace ('ed_triage' as event_type, md5('x') as event_id)
                       from marts.fct_events limit 1""")
        with pytest.raises(InputDataError, match=r"ed_triage \(1 rows\).*meds_export/events.sql"):
            export_meds(con, MedsExportConfig(out=str(warehouse_copy.parent / "meds")))
    assert not (warehouse_copy.parent / "meds").exists()
