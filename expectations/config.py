"""Settings of a validation run. Everything here goes into the run's config hash, so the same settings over
the same dbt build give the same run_id (re-running replaces that run's result rows)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from ehrforge.errors import ConfigError
from ehrforge.paths import DBT_PROJECT_DIR, REPO_ROOT

RANGES_PATH = Path(__file__).resolve().parent / "ranges.yaml"


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
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the physiological ranges {path}: {exc}") from exc
    items = data.get("items") or {}
    for itemid, spec in items.items():
        missing = {"label", "unit", "min", "max", "median"} - set(spec)
        if missing:
            raise ConfigError(f"{path}: item {itemid} lacks {sorted(missing)}")
        if not spec["min"] < spec["max"] or len(spec["median"]) != 2:
            raise ConfigError(f"{path}: item {itemid} needs min < max and median: [low, high]")
    return {"mostly": float(data.get("mostly", 0.99)), "items": {str(k): v for k, v in items.items()}}


def ranges_sha256(path: Path = RANGES_PATH) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def default_docs_dir() -> Path:
    return REPO_ROOT / "reports" / "data_docs"
