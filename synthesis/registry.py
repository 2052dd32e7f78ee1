"""Task registry: a task family is one class registered with a name, a version and the marts it reads.

    @register_task("risk_prediction", version="1.0", source_marts=["marts.fct_outcomes"], config=RiskConfig)
    class RiskPrediction(Task):
        def build(self, ctx, cfg) -> list[dict]: ...          # instruction rows (without split/run columns)
        def recompute(self, con, rows) -> list[str | None]: ... # answers again, from the lineage alone

Changing a task's prompt, template or answer format bumps its version, so rows of old and new never mix silently.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import pkgutil
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

TASKS: dict[str, "Task"] = {}


class TaskConfig(BaseModel):
    """Fields every task accepts; task configs subclass this."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    quota: int = Field(100, ge=0, description="most rows this task writes (over all splits)")


class Task:
    name: ClassVar[str]
    version: ClassVar[str]
    source_marts: ClassVar[list[str]]
    config_model: ClassVar[type[TaskConfig]] = TaskConfig
    uses_llm: ClassVar[bool] = False
    # tasks that read other tasks' rows (paraphrase) run after them
    depends_on: ClassVar[list[str]] = []

    def build(self, ctx, cfg) -> list[dict]:  # pragma: no cover - interface
        raise NotImplementedError

    def recompute(self, con, rows: list[dict]) -> list[Any]:
        """Answer of each row recomputed from its lineage only (None where the task cannot, e.g. LLM output)."""
        return [None] * len(rows)


def register_task(name: str, version: str, source_marts: list[str], config: type[TaskConfig] = TaskConfig,
                  uses_llm: bool = False, depends_on: list[str] | None = None):
    def deco(cls):
        if name in TASKS and type(TASKS[name]) is not cls:
            raise ValueError(f"task {name!r} registered twice ({type(TASKS[name]).__name__}, {cls.__name__})")
        cls.name, cls.version, cls.source_marts = name, version, list(source_marts)
        cls.config_model, cls.uses_llm, cls.depends_on = config, uses_llm, list(depends_on or [])
        TASKS[name] = cls()
        return cls
    return deco


def load_all_tasks() -> dict[str, Task]:
    import synthesis.tasks as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"synthesis.tasks.{mod.name}")
    return TASKS


def stable_hash(*parts: Any, n: int = 16) -> str:
    """Deterministic id from any JSON-able parts (instruction ids, sampling order, prompt hashes)."""
    raw = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:n]


def instruction_id(dataset: str, task: str, version: str, *key: Any) -> str:
    """The key id of a candidate row: what the row is about (dataset, task, version, note / admission / window ...).
    Sampling and every seeded choice inside a task key on it, so they do not move when the data changes."""
    return f"{task}-{stable_hash(dataset, task, version, *key)}"


def versioned_id(task: str, key_id: str, data: str) -> str:
    """The id a row is written with: its key id and the version of the source rows it was built from (`data`, a
    hash of e.g. the note text, or of the admission's events and facts). Same data and config give the same id;
    changed source rows give a new one, so a rebuilt warehouse never silently reuses an id for other content."""
    return f"{task}-{stable_hash(key_id, data)}"


def recompute_from_parent(con, rows: list[dict]) -> list:
    """Answers of rows derived from another task's row (paraphrases, reasoning chains): the parent task recomputes
    each from the parent lineage the row keeps (`parent_task`, `parent_template_id`, `parent_lineage`)."""
    out = []
    for r in rows:
        lin = json.loads(r["lineage"])
        parent = {"lineage": json.dumps(lin["parent_lineage"]), "template_id": lin["parent_template_id"]}
        out.append(TASKS[lin["parent_task"]].recompute(con, [parent])[0])
    return out


def take_quota(rows: list[dict], quota: int, seed: int, group_key: str | None = None) -> list[dict]:
    """Deterministic sample of at most `quota` rows: order by hash(seed, instruction_id); with `group_key`, take
    round-robin over the groups (e.g. templates, labels) so that each gets an equal share while it has rows.
    Same rows + same seed -> same sample, whatever order the rows came in."""
    ordered = sorted(rows, key=lambda r: stable_hash(seed, r["instruction_id"]))
    if not group_key:
        return ordered[:quota]
    groups: dict[Any, list[dict]] = {}
    for r in ordered:
        groups.setdefault(r[group_key], []).append(r)
    out: list[dict] = []
    queues = [groups[g] for g in sorted(groups, key=str)]
    i = 0
    while len(out) < quota and any(queues):
        for q in queues:
            if i < len(q) and len(out) < quota:
                out.append(q[i])
        i += 1
        if all(i >= len(q) for q in queues):
            break
    return out
