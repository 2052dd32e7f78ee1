"""The synthesis config: one YAML per instruction set (its `dataset` name), validated before anything runs.

    cfg = load_synthesis_config("synthesis/configs/demo.yaml", ["seed=7", "tasks.risk_prediction.quota=50"])

Each task's section is validated by that task's own config model (see synthesis/tasks/*.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ehrforge import vocab
from ehrforge.config import load_config
from ehrforge.errors import ConfigError

# Vital signs worth rendering out of ~1,300 chartevents items (the rest is mostly nursing documentation).
DEFAULT_CHART_ITEMIDS = [
    "220045",  # Heart Rate
    "220179",  # Non Invasive Blood Pressure systolic
    "220180",  # Non Invasive Blood Pressure diastolic
    "220210",  # Respiratory Rate
    "220277",  # O2 saturation pulseoxymetry
    "223761",  # Temperature Fahrenheit
]
EVENT_TYPES = tuple(vocab.event_types())


class RenderConfig(BaseModel):
    """How an admission (or a time window of it) becomes context text."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["markdown", "compact"] = "markdown"
    max_tokens: int = Field(1024, ge=64, description="budget for the rendered context; older events are dropped first")
    tokenizer: str | None = Field(None, description="HF tokenizer dir/id for the budget, or 'generator' (the "
                                  "generator's model, e.g. the tiny demo model); null = a chars/4 estimate")
    event_types: list[str] = ["lab", "chart", "medication_administration", "microbiology", "procedure_icd",
                              "transfer", "discharge"]
    chart_itemids: list[str] | None = Field(
        default_factory=lambda: list(DEFAULT_CHART_ITEMIDS),
        description="chartevents items kept (null = all, which is ~2,000 rows per admission on the demo)")

    @field_validator("event_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        bad = sorted(set(v) - set(EVENT_TYPES))
        if bad:
            raise ValueError(f"unknown event type(s) {bad}; known: {', '.join(EVENT_TYPES)}")
        if not v:
            raise ValueError("event_types is empty")
        return sorted(set(v))


class LLMSection(BaseModel):
    """The generator for LLM tasks. `llm` is passed to ehrforge.llm.LLMConfig unchanged."""

    model_config = ConfigDict(extra="forbid")

    llm: dict[str, Any]
    build_tiny_model: bool = Field(
        False, description="if llm.model is a missing local dir, build the tiny random model there (demo/tests)")


class SynthesisConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(..., description="name of the instruction set; a re-run replaces this dataset's rows")
    seed: int = 0
    cohort: Literal["llemr", "all_admissions", "all"] = "llemr"
    max_admissions: int | None = Field(None, ge=1, description="cap on admissions (deterministic by seed)")
    render: RenderConfig = RenderConfig()
    generator: LLMSection | None = None
    tasks: dict[str, dict[str, Any]] = {}
    export: bool = True
    export_dir: str | None = Field(None, description="default: <runs dir>/datasets/<dataset>")
    progress: bool = True

    @field_validator("dataset")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", v):
            raise ValueError(f"dataset {v!r} must be 1-64 chars of letters, digits, '_', '.', '-'")
        return v

    @model_validator(mode="after")
    def _tasks(self) -> "SynthesisConfig":
        if self.render.tokenizer == "generator" and (self.generator is None
                                                     or self.generator.llm.get("backend") == "openai"):
            raise ValueError("render.tokenizer: generator needs a local generator model (backend transformers/vllm)")
        from synthesis.registry import TASKS, load_all_tasks

        load_all_tasks()
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; registered: {', '.join(sorted(TASKS))}")
        for name, section in self.tasks.items():
            TASKS[name].config_model.model_validate(section or {})  # raises with the field path
            if TASKS[name].uses_llm and (section or {}).get("enabled", True) and self.generator is None:
                raise ValueError(f"task {name} calls an LLM: add a `generator:` section (llm: {{backend, model}}) "
                                 f"or set tasks.{name}.enabled=false")
        return self

    def task_config(self, name: str) -> BaseModel:
        from synthesis.registry import TASKS

        return TASKS[name].config_model.model_validate(self.tasks.get(name) or {})


def load_synthesis_config(path: str | Path | None, overrides: list[str] | None = None) -> SynthesisConfig:
    cfg = load_config(path, SynthesisConfig, overrides)
    if not cfg.tasks:
        raise ConfigError("the config enables no task: add a `tasks:` mapping (see synthesis/configs/demo.yaml)")
    return cfg
