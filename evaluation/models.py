"""Resolve a spec's model entries into concrete paths and an `LLMConfig` for the LLM client.

    resolved = resolve_model(con, model_spec, spec.generation, texts_for_tiny)

`training_run_id` looks the model up in `training.runs` (written by `make train`): `output_path` is the adapter
(LoRA runs) or the full model (full fine-tunes), `merged_path` the merged model, `base_model_path` the base the
stage trained on. Model names (`tiny://`, `smollm2-135m-instruct`, hub ids, dirs) go through `ehrforge.models`.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from ehrforge.errors import ConfigError, InputDataError
from ehrforge.models import TINY_PREFIX, is_adapter_dir, is_offline_model, resolve_model_path

log = logging.getLogger(__name__)

TRAINING_RUNS = "training.runs"


@dataclass
class ResolvedModel:
    name: str
    kind: str
    model_path: str                   # what is loaded (or the served name for endpoints)
    adapter_path: str | None
    base_model_path: str | None       # the model this one was fine-tuned from (itself for a base model)
    training_run_id: str | None
    base_url: str | None
    backend: str
    llm_config: object                # ehrforge.llm.LLMConfig


def pick_backend(requested: str) -> str:
    if requested != "auto":
        return requested
    if importlib.util.find_spec("vllm") is not None:
        try:
            import torch

            if torch.cuda.is_available():
                return "vllm"
        except ImportError:
            pass
    return "transformers"


def tiny_model(con, out_root: Path | None = None) -> str:
    """The tiny demo model built from this warehouse's text (built once, reused by content hash)."""
    from ehrforge.tiny_model import warehouse_texts

    return resolve_model_path(TINY_PREFIX, tiny_texts=warehouse_texts(con, limit=200), tiny_prefix="tiny-eval",
                              root=out_root)



def training_run(con, run_id: str, name: str | None) -> dict:
    """The row of training.runs for `run_id` (or the latest run, optionally with config name `name`)."""
    from ehrforge import warehouse

    warehouse.require_tables(con, [TRAINING_RUNS], hint="train a model first: `make train` (or give path / "
                             "adapter_path instead of training_run_id)")
    cols = set(warehouse.table_columns(con, TRAINING_RUNS))
    need = {"run_id", "stage", "method", "base_model_path", "output_path", "merged_path", "created_at"}
    if need - cols:
        raise InputDataError(f"{TRAINING_RUNS} lacks column(s) {sorted(need - cols)}")
    where, params = [], []
    if run_id != "latest":
        where.append("run_id = ?")
        params.append(run_id)
    if name:
        where.append("json_extract_string(config_json, '$.name') = ?")
        params.append(name)
    sql = (f"select run_id, stage, method, base_model_path, output_path, merged_path from {TRAINING_RUNS} "
           f"{'where ' + ' and '.join(where) if where else ''} "
           "order by created_at desc, case stage when 'sft' then 0 else 1 end limit 1")
    row = con.execute(sql, params).fetchone()
    if row is None:
        known = con.execute(f"select distinct run_id, json_extract_string(config_json, '$.name') from {TRAINING_RUNS} "
                            "order by 1").fetchall()
        raise InputDataError(f"no training run matches run_id={run_id!r}"
                             f"{', name=' + repr(name) if name else ''} in {TRAINING_RUNS}; known (run_id, name): "
                             f"{known[:10]}. Run `make train` or fix model.training_run_id / training_run_name.")
    return dict(zip(["run_id", "stage", "method", "base_model_path", "output_path", "merged_path"], row))


def _exists(path: str | None, what: str, name: str) -> None:
    """A local-looking path that is missing is an error now, not deep inside transformers."""
    if not path or path.startswith(TINY_PREFIX):
        return
    looks_local = path.startswith(("/", ".", "~")) or path.count("/") > 1
    if looks_local and not Path(path).expanduser().exists():
        raise InputDataError(f"model {name}: {what} {path} does not exist (was the run's output deleted? "
                             "re-run `make train`, or fix the path in the spec)")


def resolve_model(con, m, generation) -> ResolvedModel:
    """`m` is a spec.ModelSpec, `generation` a spec.GenerationSpec."""
    from ehrforge.llm import LLMConfig

    if m.kind == "baseline":
        from evaluation.baseline import BASELINE_NAME

        cfg = LLMConfig(backend="transformers", model=BASELINE_NAME)  # never loaded: the baseline calls no model
        return ResolvedModel(name=m.name, kind=m.kind, model_path=BASELINE_NAME, adapter_path=None,
                             base_model_path=None, training_run_id=None, base_url=None, backend="none",
                             llm_config=cfg)
    adapter = m.adapter_path
    path = m.path
    base = None
    run_id = None
    if m.training_run_id:
        run = training_run(con, m.training_run_id, m.training_run_name)
        run_id = run["run_id"]
        base = run["base_model_path"]
        if m.kind == "base":
            path = run["base_model_path"]
        elif m.kind == "adapter":
            if not is_adapter_dir(run["output_path"]):
                raise ConfigError(f"model {m.name}: training run {run_id} is a {run['method']} fine-tune, not an "
                                  "adapter; use kind: merged")
            path, adapter = run["base_model_path"], run["output_path"]
        elif m.kind == "merged":
            path = run["merged_path"] or (None if is_adapter_dir(run["output_path"]) else run["output_path"])
            if not path:
                raise ConfigError(f"model {m.name}: training run {run_id} has no merged model (train with "
                                  "output.merge: true, or evaluate it as kind: adapter)")
    if path and path.startswith(TINY_PREFIX):
        path = tiny_model(con)
    elif path and is_offline_model(path) and m.kind != "endpoint":
        path = resolve_model_path(path)
    if m.kind == "base":
        base = path
    elif m.kind == "adapter" and base is None:
        base = path
    for what, p in (("model path", path), ("adapter path", adapter)):
        if m.kind != "endpoint":
            _exists(p, what, m.name)
    backend = "openai" if m.kind == "endpoint" else pick_backend(generation.backend)
    fields = {
        "backend": backend, "model": path, "adapter": adapter, "base_url": m.base_url,
        "temperature": generation.temperature, "max_new_tokens": generation.max_new_tokens,
        "seed": generation.seed, "batch_size": generation.batch_size,
    }
    fields.update(m.llm)
    try:
        cfg = LLMConfig(**fields)
    except Exception as exc:  # pydantic ValidationError -> a config error naming the model
        raise ConfigError(f"model {m.name}: invalid LLM settings: {exc}") from None
    return ResolvedModel(name=m.name, kind=m.kind, model_path=path, adapter_path=adapter, base_model_path=base,
                         training_run_id=run_id, base_url=m.base_url, backend=backend, llm_config=cfg)
