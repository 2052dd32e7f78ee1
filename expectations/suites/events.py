"""Suite `events`: marts.fct_events (one row per clinical event, hundreds of millions on full MIMIC-IV).

    python -m expectations.run --suite events

Frames: schema; by_source (exact counts per source table next to the staging view's); by_type (exact
counts and value null rates per event type); profile (exact: rows, duplicate event ids per hash partition,
null rates, window status); item_sample (up to `item_sample_rows` seeded rows per reviewed itemid, checked
against the dbt seed physiological_ranges.csv, which also flags fct_events.is_implausible); sample (seeded rows with an admission: time inside the window).
"""

from __future__ import annotations

import great_expectations.expectations as gxe
import pandas as pd

from ehrforge import vocab
from expectations.config import Settings, load_ranges
from expectations.core import (Frame, SuiteSpec, critical, hours_outside, metric_between, null_rates, schema_frame,
                               seeded_sample, warn, where)

TABLE = "marts.fct_events"

CONTRACT = {TABLE: {
    "event_id": "VARCHAR", "subject_id": "BIGINT", "hadm_id": "BIGINT", "stay_id": "BIGINT",
    "event_time": "TIMESTAMP", "event_end_time": "TIMESTAMP", "hours_since_admit": "DOUBLE",
    "event_type": "VARCHAR", "itemid": "VARCHAR", "item_label": "VARCHAR", "value_text": "VARCHAR",
    "value_num": "DOUBLE", "unit": "VARCHAR", "ref_range_lower": "DOUBLE", "ref_range_upper": "DOUBLE",
    "is_abnormal": "BOOLEAN", "is_implausible": "BOOLEAN", "window_status": "VARCHAR", "hadm_id_origin": "VARCHAR",
    "source_table": "VARCHAR", "source_row_key": "VARCHAR",
}}

# source_table -> (staging view, [min, max] events per source row). One event per row, except admissions,
# which yields admission/discharge/death/demographics events. Rows without any time are dropped by design.
SOURCES = {
    "admissions": ("staging.stg_mimic_hosp__admissions", (1.0, 20.0)),
    "diagnoses_icd": ("staging.stg_mimic_hosp__diagnoses_icd", (0.95, 1.0)),
    "procedures_icd": ("staging.stg_mimic_hosp__procedures_icd", (0.95, 1.0)),
    "labevents": ("staging.stg_mimic_hosp__labevents", (0.95, 1.0)),
    "microbiologyevents": ("staging.stg_mimic_hosp__microbiologyevents", (0.95, 1.0)),
    "prescriptions": ("staging.stg_mimic_hosp__prescriptions", (0.95, 1.0)),
    "emar": ("staging.stg_mimic_hosp__emar", (0.95, 1.0)),
    "transfers": ("staging.stg_mimic_hosp__transfers", (0.95, 1.0)),
    "omr": ("staging.stg_mimic_hosp__omr", (0.95, 1.0)),
    "chartevents": ("staging.stg_mimic_icu__chartevents", (0.95, 1.0)),
    "inputevents": ("staging.stg_mimic_icu__inputevents", (0.95, 1.0)),
    "outputevents": ("staging.stg_mimic_icu__outputevents", (0.95, 1.0)),
    "procedureevents": ("staging.stg_mimic_icu__procedureevents", (0.95, 1.0)),
    "datetimeevents": ("staging.stg_mimic_icu__datetimeevents", (0.95, 1.0)),
}

EVENT_TYPES = list(vocab.event_types())
# Ceilings on the share of events of a type without a numeric value (demo: lab 12%, chart 57%).
VALUE_NULL_CEILINGS = {"lab": 0.35, "chart": 0.8, "input": 0.01, "output": 0.01, "procedure_icu": 0.01}
WINDOW_STATUSES = ["in_admission", "near_admission", "outside_admission", "no_admission"]
# Rows per hash partition for the exact duplicate count: count(distinct event_id) holds every id of a
# partition in a hash table (measured: 16M ids = 1.75 GB peak in one pass, 0.74 GB per pass in 4 partitions).
DEDUP_ROWS_PER_PARTITION = 10_000_000


def _by_source_sql() -> str:
    staged = "\n union all ".join(
        f"select '{src}' as source_table, (select count(*) from {view}) as n_source"
        for src, (view, _) in SOURCES.items()
    )
    return f"""
        with mart as (select source_table, count(*) as n_mart from {TABLE} group by source_table),
        staged as ({staged})
        select coalesce(s.source_table, m.source_table) as row_key,
               coalesce(s.source_table, m.source_table) as source_table,
               coalesce(m.n_mart, 0) as n_mart, coalesce(s.n_source, 0) as n_source,
               coalesce(m.n_mart, 0) / greatest(coalesce(s.n_source, 0), 1) as events_per_source_row
        from staged s full outer join mart m using (source_table)
        order by row_key
    """


def _profile(con, settings: Settings) -> pd.DataFrame:
    cols = ["event_id", "subject_id", "event_time", "event_type", "source_table", "source_row_key",
            "item_label", "window_status", "hadm_id"]
    df = con.execute(f"""
        select 'fct_events' as row_key, count(*) as n_rows,
               count(*) filter (where window_status = 'outside_admission') / greatest(count(*), 1)
                   as frac_outside_admission,
               count(*) filter (where window_status = 'no_admission') / greatest(count(*), 1) as frac_no_admission,
               count(*) filter (where event_end_time < event_time) / greatest(count(*), 1) as frac_end_before_start,
               count(*) filter (where is_implausible) as n_implausible,
               count(*) filter (where is_implausible)
                   / greatest(count(*) filter (where event_type in ('lab', 'chart') and value_num is not null), 1)
                   as frac_implausible,
               {null_rates(cols)}
        from {TABLE}
    """).df()
    n_rows = int(df.loc[0, "n_rows"])
    # With a memory limit DuckDB spills the distinct hash table to disk, so one pass is bounded and fastest
    # (16M ids under 500MB: 8 s, 0.56 GB); without one, hash partitions keep each pass's table small.
    auto = 1 if settings.memory_limit else max(1, -(-n_rows // DEDUP_ROWS_PER_PARTITION))
    parts = settings.dedup_partitions or auto
    dups = 0
    for p in range(parts):
        cond = "" if parts == 1 else f"where hash(event_id) % {parts} = {p}"
        dups += con.execute(f"select count(event_id) - count(distinct event_id) from {TABLE} {cond}").fetchone()[0]
    df["n_duplicate_event_id"] = dups
    df["dedup_partitions"] = parts
    return df


def _item_sample_sql(settings: Settings, items: dict) -> str:
    ids = ", ".join(f"'{i}'" for i in items)
    units = ", ".join(f"('{i}', '{spec['unit']}')" for i, spec in items.items())
    return f"""
        with expected(itemid, expected_unit) as (values {units})
        select s.*, e.expected_unit from (
            select itemid,
                   unnest(min_by({{'row_key': event_id, 'value_num': value_num, 'unit': unit}},
                                 hash(event_id, {settings.seed}), {settings.item_sample_rows}), recursive := true)
            from {TABLE}
            where itemid in ({ids}) and value_num is not null
            group by itemid
        ) s join expected e using (itemid)
        order by itemid, row_key
    """


def _sample_sql(settings: Settings) -> str:
    cols = ["event_id", "hadm_id", "event_time", "hadm_id_origin", "source_table", "event_type", "window_status"]
    return f"""
        with s as ({seeded_sample(TABLE, "event_id", {c: c for c in cols}, settings.sample_rows, settings.seed,
                                  "hadm_id is not null")})
        select s.event_id as row_key, s.hadm_id_origin, s.source_table, s.event_type, s.window_status,
               {hours_outside("s.event_time", "a.admittime", "a.dischtime")} as hours_outside_window,
               a.hadm_id is not null as has_admission
        from s left join marts.dim_admissions a on a.hadm_id = s.hadm_id
        order by row_key
    """


def build(settings: Settings) -> list[Frame]:
    ranges = load_ranges()
    items = ranges["items"]
    by_source = []
    for src, (view, (lo, hi)) in SOURCES.items():
        by_source += [
            metric_between("n_mart", f"source_rows_present.{src}", "critical",
                           f"{src} yields events: 0 rows means an interrupted download or a failed staging view",
                           min_value=1, key=src),
            metric_between("events_per_source_row", f"source_rows_ratio.{src}", "critical",
                           f"events per {view} row within [{min(lo, 0.5)}, {hi}]: above means duplicated events, "
                           "far below means rows lost between staging and the mart",
                           min_value=min(lo, 0.5), max_value=hi, key=src),
            metric_between("events_per_source_row", f"source_rows_ratio_tight.{src}", "warn",
                           f"events per {view} row within [{lo}, {hi}] (only rows without any time are dropped)",
                           min_value=lo, max_value=hi, key=src),
        ]
    by_source.append(critical(
        gxe.ExpectColumnValuesToBeInSet(column="source_table", value_set=sorted(SOURCES)),
        "accepted_source_tables", "every event comes from a known MIMIC-IV source table"))

    by_type = [
        critical(gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=EVENT_TYPES),
                 "accepted_event_types", "event types are a closed set that synthesis templates rely on"),
        critical(gxe.ExpectColumnDistinctValuesToContainSet(column="event_type",
                                                            value_set=["lab", "chart", "diagnosis"]),
                 "core_event_types_present", "labs, charted vitals and diagnoses are the core of every task"),
    ] + [
        metric_between("null_rate_value_num", f"value_num_null_rate.{et}", "warn",
                       f"share of {et} events without a numeric value at most {ceiling}", max_value=ceiling, key=et)
        for et, ceiling in VALUE_NULL_CEILINGS.items()
    ]

    profile = [
        critical(gxe.ExpectColumnMaxToBeBetween(column="n_rows", min_value=1), "rows_present",
                 "an events mart with no rows means the build or the download failed"),
        critical(gxe.ExpectColumnMaxToBeBetween(column="n_duplicate_event_id", max_value=0), "unique_event_id",
                 "event_id = md5(source_table|source_row_key) identifies an event; duplicates double-count"),
        warn(gxe.ExpectColumnMaxToBeBetween(column="frac_outside_admission", max_value=0.01),
             "outside_admission_share", "events with an admission lie inside or near it"),
        warn(gxe.ExpectColumnMaxToBeBetween(column="frac_no_admission", max_value=0.6),
             "no_admission_share", "most events belong to an admission (outpatient labs and omr may not)"),
        warn(gxe.ExpectColumnMaxToBeBetween(column="frac_end_before_start", max_value=0.01),
             "end_before_start_share", "event_end_time precedes event_time only for rare charting errors"),
        warn(gxe.ExpectColumnMaxToBeBetween(column="frac_implausible", max_value=0.001),
             "implausible_share", "values flagged is_implausible (outside seed physiological_ranges) are rare "
             "entry errors; they stay in the mart and never become an aggregate answer"),
    ] + [
        metric_between(f"null_rate__{c}", f"null_rate.{c}", "critical", f"{c} is never null", max_value=0)
        for c in ["event_id", "subject_id", "event_time", "event_type", "source_table", "source_row_key",
                  "window_status"]
    ] + [
        metric_between("null_rate__item_label", "null_rate.item_label", "warn", "items carry a label",
                       max_value=0.01),
        metric_between("null_rate__hadm_id", "null_rate.hadm_id", "warn",
                       "most events are attributed to an admission", max_value=0.6),
    ]

    item_sample = [
        warn(gxe.ExpectColumnDistinctValuesToContainSet(column="itemid", value_set=sorted(items)),
             "reviewed_items_present", "every itemid of seed physiological_ranges occurs (MIMIC-IV and its demo)"),
    ]
    for itemid, spec in items.items():
        label = f"{itemid} {spec['label']} ({spec['unit']})"
        item_sample += [
            critical(gxe.ExpectColumnValuesToBeBetween(column="value_num", min_value=spec["min"],
                                                       max_value=spec["max"], mostly=ranges["mostly"],
                                                       **where("itemid", itemid)),
                     f"item_range.{itemid}",
                     f"{label}: physiological range [{spec['min']}, {spec['max']}] for at least "
                     f"{ranges['mostly']:.0%} of values; more outside means a unit or scale change"),
            warn(gxe.ExpectColumnMedianToBeBetween(column="value_num", min_value=spec["median"][0],
                                                   max_value=spec["median"][1], **where("itemid", itemid)),
                 f"item_median.{itemid}", f"{label}: median within {spec['median']}; outside means values jumped"),
        ]
    item_sample.append(warn(
        gxe.ExpectColumnPairValuesToBeEqual(column_A="unit", column_B="expected_unit", mostly=0.999),
        "item_units",
        "each reviewed item is recorded in the unit of seed physiological_ranges; a different unit string means "
        "the source changed how it reports the item (one item switching fails this)"))

    sample = [
        critical(gxe.ExpectColumnValuesToBeBetween(column="hours_outside_window", min_value=0,
                                                   max_value=settings.window_hours, mostly=0.99),
                 "event_time_in_admission_window",
                 f"events with an admission lie within {settings.window_hours:g} h of [admittime, dischtime] "
                 "(dbt grace + tolerance); a shifted clock moves most of them out"),
        critical(gxe.ExpectColumnValuesToBeInSet(column="has_admission", value_set=[True]),
                 "hadm_id_exists", "every event's hadm_id is an admission of marts.dim_admissions"),
        critical(gxe.ExpectColumnValuesToBeInSet(column="window_status", value_set=WINDOW_STATUSES[:3]),
                 "window_status_values", "events with an admission are in, near or outside it"),
        critical(gxe.ExpectColumnValuesToBeUnique(column="row_key"), "sample_unique_event_id",
                 "the seeded sample has no duplicated event ids"),
    ]

    return [
        schema_frame("events", CONTRACT),
        Frame("events", "by_source", TABLE, "aggregate", "events per source table vs staging rows (exact)",
              _by_source_sql(), by_source),
        Frame("events", "by_type", TABLE, "aggregate", "events and value null rate per event type (exact)",
              f"""select event_type as row_key, event_type, count(*) as n,
                         1.0 * count(*) filter (where value_num is null) / count(*) as null_rate_value_num
                  from {TABLE} group by event_type order by event_type""", by_type),
        Frame("events", "profile", TABLE, "aggregate", "row count, duplicate ids, null rates (exact)",
              _profile, profile),
        Frame("events", "item_sample", TABLE, "sample",
              f"up to {settings.item_sample_rows} seeded values per reviewed itemid",
              _item_sample_sql(settings, items), item_sample),
        Frame("events", "sample", TABLE, "sample", f"{settings.sample_rows} seeded events with an admission",
              _sample_sql(settings), sample),
    ]


SUITE = SuiteSpec("events", [TABLE, "marts.dim_admissions"], build,
                  description="marts.fct_events: counts vs source, types, ids, ranges, time windows")
