"""Full fine-tuning: every weight trains (use FSDP or ZeRO-3 beyond one GPU's memory)."""

from __future__ import annotations

from training.recipes import load_base


def prepare(model_path: str, cfg, dtype):
    model = load_base(model_path, cfg, dtype)
    model.config.use_cache = False
    return model
