"""Training methods: one recipe module per method, registered once with what it is.

    @register_recipe("lora", is_adapter=True, default_distributed="ddp",
                     description="frozen base, low-rank adapters on the target modules")
    def prepare(model_path: str, cfg, dtype): ...      # -> a model ready for the Trainer

A new method is one file here plus a config `training/configs/<family>/<size>_<method>.yaml`; the config's
`method` is checked against this registry, and what the trainer does with the result (save an adapter or a
full model, merge, default multi-process strategy, gradient checkpointing) follows the recipe's fields.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, Literal


@dataclass(frozen=True)
class Recipe:
    name: str
    prepare: Callable
    is_adapter: bool                                   # saves an adapter on a frozen base (mergeable), else a full model
    default_distributed: Literal["ddp", "fsdp", "zero3"]
    supports_sharding: bool = True                     # False: fsdp / zero3 refused at config time
    description: str = ""
    # A method with its own training loop (GRPO) trains its own stage: `snapshot(con, cfg, prepared) -> (meta,
    # texts)` writes its data into the prepared folder (launch, one process), `run_stage(cfg, stage, base_path,
    # run_dir, callbacks) -> summary` trains it (trainer, every process). None: the SFT / CPT loop of the trainer.
    stage: str = "sft"
    snapshot: Callable | None = None
    run_stage: Callable | None = None


RECIPES: dict[str, Recipe] = {}


def register_recipe(name: str, *, is_adapter: bool, default_distributed: Literal["ddp", "fsdp", "zero3"],
                    supports_sharding: bool = True, description: str = "", stage: str = "sft",
                    snapshot: Callable | None = None, run_stage: Callable | None = None):
    def wrap(prepare):
        if name in RECIPES and RECIPES[name].prepare is not prepare:
            raise ValueError(f"training recipe {name!r} registered twice")
        RECIPES[name] = Recipe(name, prepare, is_adapter, default_distributed, supports_sharding, description,
                               stage, snapshot, run_stage)
        return prepare

    return wrap


def all_recipes() -> dict[str, Recipe]:
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    return dict(RECIPES)


def get_recipe(method: str) -> Recipe:
    recipes = all_recipes()
    if method not in recipes:
        raise ValueError(f"unknown training method {method!r}; registered: {', '.join(sorted(recipes))}")
    return recipes[method]


def load_for_training(method: str, model_path: str, cfg, dtype):
    return get_recipe(method).prepare(model_path, cfg, dtype)


def load_base(model_path: str, cfg, dtype, **kw):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        model_path,
        dtype=dtype,
        attn_implementation=cfg.model.attn_implementation,
        trust_remote_code=cfg.model.trust_remote_code,
        **kw,
    )
