"""One module per method; each exposes `prepare(model_path, cfg, dtype) -> model` ready for Trainer."""

from __future__ import annotations

import importlib


def load_for_training(method: str, model_path: str, cfg, dtype):
    if method not in ("lora", "qlora", "full"):
        raise ValueError(f"unknown method {method!r}")
    return importlib.import_module(f"training.recipes.{method}").prepare(model_path, cfg, dtype)


def load_base(model_path: str, cfg, dtype, **kw):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        model_path,
        dtype=dtype,
        attn_implementation=cfg.model.attn_implementation,
        trust_remote_code=cfg.model.trust_remote_code,
        **kw,
    )
