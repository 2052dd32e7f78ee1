"""The warehouse as a MEDS dataset (Medical Event Data Standard, `meds` package schemas), from the marts only.

    python -m meds_export.cli [--out DIR] [key=value ...]          # = make export-meds

Layout written (MEDS 0.4):
    data/<split>/<n>.parquet          subject_id, time, code, numeric_value, text_value (+ event_id: the
                                      marts.fct_events row, a raw-source id column); a subject lives in one shard,
                                      its rows contiguous and sorted by time (MEDS_BIRTH first)
    metadata/codes.parquet            code, description, parent_codes, n_events (every code of the data)
    metadata/subject_splits.parquet   subject_id, split (marts.dim_splits: train / val / test -> MEDS train /
                                      tuning / held_out)
    metadata/dataset.json             dataset and ETL names and versions, MEDS version, licence, extra columns
    task_labels/<task>/0.parquet      marts.fct_outcomes in MEDS's label schema (subject_id, prediction_time,
                                      boolean_value), one folder per outcome task

Every table is validated against the `meds` package's schema before it is written. The whole folder is built
next to its destination and renamed into place when complete (ehrforge.atomic), so a killed export leaves the
previous export (or nothing) and never a folder `is_complete` accepts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ehrforge import warehouse
from ehrforge.errors import InputDataError

log = logging.getLogger(__name__)

EVENTS_SQL = Path(__file__).with_name("events.sql")
MART_TABLES = ["marts.fct_events", "marts.dim_splits", "marts.dim_admissions", "marts.dim_icustays",
               "marts.fct_outcomes"]
# marts.dim_splits -> MEDS split names (meds.train_split, meds.tuning_split, meds.held_out_split)
SPLIT_NAMES = {"train": "train", "val": "tuning", "test": "held_out"}
EXTRA_COLUMNS = ["event_id"]


class MedsExportConfig(BaseModel):
    """What `make export-meds` writes; every field can be overridden as key=value."""

    model_config = ConfigDict(extra="forbid")
    out: str | None = Field(None, description="output folder (default: <runs>/meds/<dataset_name>)")
    dataset_name: str = "MIMIC-IV-demo"
    license: str = "ODbL-1.0"
    subjects_per_shard: int = Field(10_000, ge=1)
    unknown: str = Field("UNK", min_length=1, description="written for a missing code component (e.g. a lab unit)")
    include_event_id: bool = True
    task_labels: bool = True

    def out_dir(self) -> Path:
        from ehrforge.paths import runs_dir

        return Path(self.out) if self.out else runs_dir() / "meds" / self.dataset_name


@dataclass
class ExportSummary:
    out: Path
    n_events: int
    n_subjects: int
    n_codes: int
    shards: dict[str, int] = field(default_factory=dict)      # shard path -> rows
    labels: dict[str, int] = field(default_factory=dict)      # task -> rows


def events_sql(unknown: str) -> str:
    if "'" in unknown:
        raise InputDataError(f"meds export: `unknown` must not contain a quote (got {unknown!r})")
    return EVENTS_SQL.read_text().replace("{unk}", unknown)


def _dataset_version(con) -> str | None:
    """The dbt build the marts come from (meta.dbt_builds), so an export names the data it was made of."""
    if not warehouse.table_exists(con, "meta.dbt_builds"):
        return None
    return warehouse.fetch_scalar(
        con, "select invocation_id from meta.dbt_builds order by coalesce(started_at, finished_at) desc limit 1")


def _check_inputs(con) -> None:
    warehouse.require_tables(con, MART_TABLES, hint="build the warehouse first: `make build`")
    unsplit = warehouse.fetch_one(con, """
        select count(distinct e.subject_id), min(e.subject_id) from marts.fct_events e
        left join marts.dim_splits s using (subject_id) where s.subject_id is null""")
    if unsplit and unsplit[0]:
        raise InputDataError(
            f"marts.fct_events has {unsplit[0]} subject(s) without a row in marts.dim_splits (e.g. subject_id "
            f"{unsplit[1]}): every MEDS subject needs a split. Rebuild the warehouse (`make build`); the dbt "
            "relationships test on fct_events.subject_id should have caught this.")
    bad = set(warehouse.fetch_scalar(con, "select list(distinct split) from marts.dim_splits") or []) - set(SPLIT_NAMES)
    if bad:
        raise InputDataError(f"marts.dim_splits.split has value(s) {sorted(bad)}; the MEDS export maps only "
                             f"{sorted(SPLIT_NAMES)} (to {sorted(SPLIT_NAMES.values())}). Add the mapping to "
                             "meds_export.export.SPLIT_NAMES.")


def _align(schema_cls, table, what: str):
    """Cast to the MEDS schema's types and validate; a failure names the file and what is wrong."""
    from flexible_schema import SchemaValidationError, TableValidationError

    try:
        out = schema_cls.align(table)
        schema_cls.validate(out)
    except (SchemaValidationError, TableValidationError) as exc:
        raise InputDataError(f"meds export: {what} does not satisfy meds.{schema_cls.__name__}: {exc}") from exc
    return out


def export_meds(con, cfg: MedsExportConfig) -> ExportSummary:
    """Write the MEDS dataset into cfg.out_dir() (atomically). `con` may be read-only."""
    import meds
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ehrforge.atomic import atomic_dir

    _check_inputs(con)
    con.execute(f"create or replace temp table _meds_events as {events_sql(cfg.unknown)}")
    unmapped = con.execute("select event_type, count(*) from _meds_events where code is null group by 1").fetchall()
    if unmapped:
        raise InputDataError(
            "marts.fct_events has event types the MEDS export does not code: "
            + ", ".join(f"{t} ({n} rows)" for t, n in unmapped)
            + ". Add a `when '<event_type>' then ...` line to meds_export/events.sql (see docs/meds.md, codes).")
    subjects = con.execute("""
        select s.subject_id, s.split from marts.dim_splits s
        where s.subject_id in (select subject_id from _meds_events)
        order by s.subject_id""").fetchall()
    out = cfg.out_dir()
    data_cols = ["subject_id", "time", "code", "numeric_value", "text_value"]
    if cfg.include_event_id:
        data_cols += EXTRA_COLUMNS
    summary = ExportSummary(out=out, n_events=0, n_subjects=len(subjects), n_codes=0)
    dataset_version = _dataset_version(con)
    with atomic_dir(out, meta={"dataset_version": dataset_version, "etl": "ehrforge.meds_export"}) as tmp:
        by_split: dict[str, list[int]] = {}
        for sid, split in subjects:
            by_split.setdefault(SPLIT_NAMES[split], []).append(int(sid))
        for split, ids in sorted(by_split.items()):
            for n, start in enumerate(range(0, len(ids), cfg.subjects_per_shard)):
                chunk = ids[start:start + cfg.subjects_per_shard]
                rel = f"{meds.data_subdirectory}/{split}/{n}.parquet"
                # static rows (null time) first, then by time; ties in a stable order
                tbl = con.sql(f"""
                    select {', '.join(data_cols)} from _meds_events
                    where subject_id in (select unnest(?::bigint[]))
                    order by subject_id, time nulls first, code, event_id nulls first""", params=[chunk]).to_arrow_table()
                tbl = _align(meds.DataSchema, tbl, rel)
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(tbl, tmp / rel)
                summary.shards[rel] = tbl.num_rows
                summary.n_events += tbl.num_rows

        codes = con.sql("""
            select code, min(item_label) || case when count(distinct item_label) > 1 then ' (and other labels)'
                                                 else '' end as description,
                   cast(null as varchar[]) as parent_codes, count(*) as n_events
            from _meds_events group by code order by code""").to_arrow_table()
        codes = _align(meds.CodeMetadataSchema, codes, meds.code_metadata_filepath)
        (tmp / "metadata").mkdir(parents=True, exist_ok=True)
        pq.write_table(codes, tmp / meds.code_metadata_filepath)
        summary.n_codes = codes.num_rows

        splits = pa.table({"subject_id": pa.array([s for s, _ in subjects], pa.int64()),
                           "split": pa.array([SPLIT_NAMES[p] for _, p in subjects], pa.string())})
        splits = _align(meds.SubjectSplitSchema, splits, meds.subject_splits_filepath)
        pq.write_table(splits, tmp / meds.subject_splits_filepath)

        if cfg.task_labels:
            for task, in con.execute("select distinct task from marts.fct_outcomes order by task").fetchall():
                lab = con.sql("""
                    select subject_id, prediction_time, label as boolean_value from marts.fct_outcomes
                    where task = ? and label is not null order by subject_id, prediction_time""",
                              params=[task]).to_arrow_table()
                rel = f"task_labels/{task}/0.parquet"
                lab = _align(meds.LabelSchema, lab, rel)
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(lab, tmp / rel)
                summary.labels[task] = lab.num_rows

        metadata = {
            "dataset_name": cfg.dataset_name,
            "dataset_version": dataset_version or "unknown",
            "etl_name": "ehrforge.meds_export",
            "etl_version": warehouse.code_version(),
            "meds_version": meds.__version__,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "license": cfg.license,
            "raw_source_id_columns": EXTRA_COLUMNS if cfg.include_event_id else [],
        }
        try:
            meds.DatasetMetadataSchema.validate(metadata)
        except Exception as exc:  # jsonschema / flexible_schema errors
            raise InputDataError(f"meds export: {meds.dataset_metadata_filepath} is not valid: {exc}") from exc
        (tmp / meds.dataset_metadata_filepath).write_text(json.dumps(metadata, indent=2) + "\n")
    log.info("MEDS export: %d events, %d subjects, %d codes, %d shards into %s", summary.n_events,
             summary.n_subjects, summary.n_codes, len(summary.shards), out)
    return summary
