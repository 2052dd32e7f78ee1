"""Evaluation specs: `evaluation/specs/<name>.yaml`, validated here before any model loads.

    spec = load_spec("evaluation/specs/demo.yaml", ["data.subset.n_per_task=10"])

A spec carries a `version`: bump it whenever the prompt, metrics or judge rubric change, so scores made under
different rules are never mixed (every row written carries spec_name + spec_version).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ehrforge.config import load_config


class Subset(BaseModel):
    """A seeded subset of the test split: items are ordered by hash(seed, instruction_id) and the first n kept
    (per task, or overall); adding items to the set later leaves the chosen ones chosen."""

    model_config = ConfigDict(extra="forbid")
    n_per_task: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1)
    seed: int = 0


class DataSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: str = "synthesis.instructions"
    dataset: str
    split: Literal["train", "val", "test"] = "test"
    tasks: list[str] | None = None
    subset: Subset = Subset()
    splits_table: str = "marts.dim_splits"
    system_prompt: str | None = None


class ModelSpec(BaseModel):
    """One model to evaluate.

    kind base:     path = hub id / local dir / tiny:// (or training_run_id: the run's base model)
    kind adapter:  path = base, adapter_path = LoRA dir (or training_run_id: the run's adapter on its base)
    kind merged:   path = full model dir (or training_run_id: the run's merged / full fine-tuned model)
    kind endpoint: path = served model name, base_url = OpenAI-compatible URL (PHI guard applies)
    kind baseline: no model: the most common train answer per (task, template) (evaluation.baseline)
    training_run_id: a run_id of training.runs, or `latest` (optionally narrowed by training_run_name).
    """

    model_config = ConfigDict(extra="forbid")
    name: str
    kind: Literal["base", "adapter", "merged", "endpoint", "baseline"]
    path: str | None = None
    adapter_path: str | None = None
    training_run_id: str | None = None
    training_run_name: str | None = None
    base_url: str | None = None
    llm: dict[str, Any] = {}  # extra LLMConfig fields (approved_endpoints, api_key_env, dtype, batch_size, ...)

    @model_validator(mode="after")
    def _check(self) -> "ModelSpec":
        if self.kind == "baseline":
            if self.path or self.adapter_path or self.training_run_id or self.base_url:
                raise ValueError(f"model {self.name}: kind baseline reads the training split's answers; it takes no "
                                 "path, adapter_path, training_run_id or base_url")
            return self
        if self.kind == "endpoint":
            if not (self.path and self.base_url):
                raise ValueError(f"model {self.name}: kind endpoint needs path (the served model name) and base_url")
            if self.adapter_path or self.training_run_id:
                raise ValueError(f"model {self.name}: kind endpoint takes no adapter_path/training_run_id "
                                 "(serve the LoRA as its own model name)")
        else:
            if self.base_url:
                raise ValueError(f"model {self.name}: base_url is only for kind endpoint")
            if not (self.path or self.training_run_id):
                raise ValueError(f"model {self.name}: give path or training_run_id")
            if self.kind == "adapter" and not (self.adapter_path or self.training_run_id):
                raise ValueError(f"model {self.name}: kind adapter needs adapter_path (or training_run_id)")
        if self.training_run_name and not self.training_run_id:
            raise ValueError(f"model {self.name}: training_run_name narrows training_run_id: latest; set it too")
        return self


class GenerationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: Literal["auto", "transformers", "vllm"] = "auto"  # endpoints always use the openai backend
    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0)
    seed: int = 0
    batch_size: int = Field(16, ge=1)
    yes_no: Literal["score", "generate"] = "score"  # score: P(yes) by choice scoring, prediction = likelier choice
    choices: list[str] = ["yes", "no"]


class JudgeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    rubric: str = "clinical_answer"
    answer_types: list[str] = ["text"]
    jury: list[ModelSpec] = []          # one or more judges; their scores are averaged
    both_orders: bool = True            # judge (reference, candidate) and (candidate, reference)
    max_retries: int = Field(2, ge=0)   # re-ask with the parse error on malformed output
    max_items: int | None = Field(None, ge=1)
    max_new_tokens: int = Field(256, ge=16)
    # json: per-criterion scores + verdict as a generated JSON object; choice: the verdict (A / B / tie) by choice
    # scoring, for judges too small to write the object (judge_score then stays empty)
    output: Literal["json", "choice"] = "json"

    @model_validator(mode="after")
    def _jury(self) -> "JudgeSpec":
        if self.enabled and not self.jury:
            raise ValueError("judge.enabled needs at least one judge model in judge.jury")
        return self


class BootstrapSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(1000, ge=0)
    seed: int = 0


SUBGROUP_ATTRIBUTES = ("sex", "age_band", "race", "insurance")  # columns of marts.dim_admissions (see subgroups.py)


class SubgroupSpec(BaseModel):
    """Every task figure again per subgroup of the item's admission (marts.dim_admissions), with bootstrap CIs;
    the results mart flags the attribute with the largest gap between its best and worst subgroup."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    attributes: list[Literal["sex", "age_band", "race", "insurance"]] = list(SUBGROUP_ATTRIBUTES)
    min_items: int = Field(5, ge=1)   # smaller subgroups are kept but not ranked (no gap, no flag)


class ConsistencySpec(BaseModel):
    """k seeded samples per item (temperature > 0), each scored by a correctness metric: pass@k (at least one of
    k right) and pass^k (all k right), unbiased estimates from n_samples draws (Chen et al. 2021; Yao et al. 2024)."""

    model_config = ConfigDict(extra="forbid")
    n_samples: int = Field(0, ge=0)   # 0: off
    k: int | None = Field(None, ge=1)  # default: n_samples
    temperature: float = Field(0.8, gt=0)
    answer_types: list[str] = ["yes_no", "number", "set"]
    # answer type -> the item metric that says whether a sample is right (value >= threshold)
    correct_metric: dict[str, str] = {"yes_no": "exact_match", "number": "numeric_match", "set": "exact_match",
                                      "text": "exact_match"}
    threshold: float = 1.0
    max_items: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _k(self) -> "ConsistencySpec":
        if self.n_samples and self.k is not None and self.k > self.n_samples:
            raise ValueError(f"consistency.k ({self.k}) cannot exceed consistency.n_samples ({self.n_samples})")
        missing = [t for t in self.answer_types if t not in self.correct_metric]
        if missing:
            raise ValueError(f"consistency.correct_metric has no metric for answer type(s) {missing}")
        return self


class EvalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    version: int = Field(..., ge=1)
    data: DataSpec
    models: list[ModelSpec] = Field(..., min_length=1)
    generation: GenerationSpec = GenerationSpec()
    metrics: dict[str, list[str]] = {}        # answer_type or task -> metric names (task wins); default per type
    metric_params: dict[str, dict[str, Any]] = {}
    judge: JudgeSpec = JudgeSpec()
    bootstrap: BootstrapSpec = BootstrapSpec()
    subgroups: SubgroupSpec = SubgroupSpec()
    consistency: ConsistencySpec = ConsistencySpec()
    build_results: bool = True                 # dbt build --select results at the end

    @field_validator("models")
    @classmethod
    def _unique(cls, v: list[ModelSpec]) -> list[ModelSpec]:
        names = [m.name for m in v]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique within a spec: {names}")
        return v

    @model_validator(mode="after")
    def _metrics(self) -> "EvalSpec":
        from evaluation.metrics import all_metrics

        known = {name for name, m in all_metrics().items() if m.kind == "item"}
        used = {**self.metrics, **{k: [k] for k in self.metric_params},
                **{f"consistency.correct_metric.{t}": [m] for t, m in self.consistency.correct_metric.items()}}
        for key, names in used.items():
            bad = [n for n in names if n not in known]
            if bad:
                raise ValueError(f"metrics[{key}]: unknown item metric(s) {bad}; registered: {sorted(known)} "
                                 "(judge metrics come from the `judge` section)")
        return self

    def fingerprint(self) -> str:
        """Hash of everything that decides how an item is prompted and scored (system prompt, generation settings,
        metrics and their parameters, judge rubric and its version, bootstrap): two runs under the same spec name and
        version must agree on it, so a changed prompt or metric without a version bump is refused, not mixed."""
        import hashlib
        import json

        from evaluation.judges.rubric import get_rubric

        body = self.model_dump(mode="json", include={"generation", "metrics", "metric_params", "bootstrap"})
        if self.consistency.n_samples:  # only when on: fingerprints of specs written before it stay valid
            body["consistency"] = self.consistency.model_dump(mode="json", exclude={"max_items"})
        body["system_prompt"] = self.data.system_prompt
        body["judge"] = self.judge.model_dump(mode="json", exclude={"jury", "max_items"})
        if body["judge"].get("output") == "json":  # the default: fingerprints of specs written before it stay valid
            body["judge"].pop("output")
        body["judge"]["rubric_version"] = get_rubric(self.judge.rubric).version if self.judge.enabled else None
        body["judge"]["jury"] = sorted(m.name for m in self.judge.jury)
        body["generation"].pop("batch_size", None)  # throughput only
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def metrics_for(self, task: str, answer_type: str) -> list[str]:
        from evaluation.metrics import default_metrics

        if task in self.metrics:
            return self.metrics[task]
        if answer_type in self.metrics:
            return self.metrics[answer_type]
        return default_metrics(answer_type)


def load_spec(path, overrides: list[str] | None = None) -> EvalSpec:
    return load_config(path, EvalSpec, overrides)
