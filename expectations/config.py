"""Settings of a validation run. Everything here goes into the run's config hash, so the same settings over
the same dbt build give the same run_id (re-running replaces that run's result rows)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from ehrforge.errors import ConfigError
from ehrforge.paths import DBT_PROJECT_DIR, REPO_ROOT

# The one source of the physiological ranges: the dbt seed that also drives fct_events.is_implausible.
RANGES_PATH = DBT_PROJECT_DIR / "seeds" / "physiological_ranges.csv"
RANGES_COLUMNS = ("itemid", "source_table", "label", "unit", "min_value", "max_value", "median_low", "median_high")
# Share of an item's values that must lie inside its range (a few entry errors are expected; the rows are
# flagged is_implausible in SQL). More outside means a unit or scale change.
RANGE_MOSTLY = 0.99


def _dbt_var(name: str, default):
    """A var from dbt_project.yml, so the checks test what the build was configured to do."""
    try:
        data = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
        value = (data.get("vars") or {}).get(name, default)
        return value if isinstance(value, (int, float)) else default
    except (OSError, yaml.YAMLError):
        return default


class Settings(BaseModel):
    seed: int = 42
    sample_rows: int = Field(50_000, ge=100, description="rows in each seeded sample frame")
    item_sample_rows: int = Field(5_000, ge=50, description="rows per itemid for the physiological ranges")
    dedup_partitions: int = Field(0, ge=0, description="hash partitions for the unique-event-id count; 0 = auto")
    memory_limit: str | None = Field(None, pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$",
                                     description="DuckDB memory_limit for the run, e.g. '4GB' (spills beyond)")
    window_tolerance_hours: float = Field(
        24.0, ge=0, description="events/notes may lie this far outside [admittime, dischtime] beyond the dbt grace"
    )
    event_window_grace_hours: float = Field(default_factory=lambda: float(_dbt_var("event_window_grace_hours", 24)))
    split_train: float = Field(default_factory=lambda: float(_dbt_var("split_train", 0.8)))
    split_val: float = Field(default_factory=lambda: float(_dbt_var("split_val", 0.1)))
    ranges_sha256: str = ""
    suites: list[str] = []

    @property
    def window_hours(self) -> float:
        return self.event_window_grace_hours + self.window_tolerance_hours


def load_ranges(path: Path = RANGES_PATH) -> dict:
    """The seed physiological_ranges.csv as {"mostly": RANGE_MOSTLY, "items": {itemid: {label, unit, min, max,
    median: [low, high], source_table}}}."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = set(RANGES_COLUMNS) - set(reader.fieldnames or [])
            if missing:
                raise ConfigError(f"{path}: lacks column(s) {sorted(missing)}; expected {', '.join(RANGES_COLUMNS)}")
            rows = list(reader)
    except OSError as exc:
        raise ConfigError(f"cannot read the physiological ranges {path}: {exc}") from exc
    items = {}
    for n, row in enumerate(rows, start=2):
        itemid = (row["itemid"] or "").strip()
        try:
            lo, hi = float(row["min_value"]), float(row["max_value"])
            median = [float(row["median_low"]), float(row["median_high"])]
        except (TypeError, ValueError):
            raise ConfigError(f"{path} line {n}: item {itemid}: min_value, max_value, median_low and median_high "
                              "must be numbers") from None
        if not itemid or not lo < hi or not median[0] <= median[1]:
            raise ConfigError(f"{path} line {n}: item {itemid!r} needs an itemid, min_value < max_value and "
                              "median_low <= median_high; fix the row")
        if itemid in items:
            raise ConfigError(f"{path} line {n}: item {itemid} is listed twice; keep one row per itemid")
        items[itemid] = {"label": row["label"], "unit": row["unit"], "min": lo, "max": hi, "median": median,
                         "source_table": row["source_table"]}
    return {"mostly": RANGE_MOSTLY, "items": items}


def ranges_sha256(path: Path = RANGES_PATH) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def default_docs_dir() -> Path:
    return REPO_ROOT / "reports" / "data_docs"
