"""Full fine-tuning: every weight trains (use FSDP or ZeRO-3 beyond one GPU's memory)."""

from __future__ import annotations

from training.recipes import load_base, register_recipe


@register_recipe("full", is_adapter=False, default_distributed="fsdp", description="every weight trains")
def prepare(model_path: str, cfg, dtype):
    model = load_base(model_path, cfg, dtype)
    model.config.use_cache = False
    return model
