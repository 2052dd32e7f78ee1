"""Vocabularies declared once, as dbt seeds, and read from the same files by every job.

    from ehrforge.vocab import event_types
    event_types()            # {"lab": {"source_table": "labevents", "title": "Lab results"}, ...}

The seed is the source of truth: dbt loads it into `reference.event_types` and tests fct_events against it;
Python reads the CSV itself (no warehouse needed, so config validation works before any build and on a
machine without duckdb).
"""

from __future__ import annotations

import csv
from functools import lru_cache

from ehrforge.paths import DBT_PROJECT_DIR

SEEDS_DIR = DBT_PROJECT_DIR / "seeds"


@lru_cache(maxsize=None)
def event_types() -> dict[str, dict[str, str]]:
    """event_type -> {"source_table", "title"}, in the seed's order."""
    with open(SEEDS_DIR / "event_types.csv", newline="") as fh:
        return {row["event_type"]: {k: v for k, v in row.items() if k != "event_type"} for row in csv.DictReader(fh)}
