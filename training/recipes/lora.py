"""LoRA: frozen base, low-rank adapters on the target modules (all linear layers by default)."""

from __future__ import annotations

from training.recipes import load_base, register_recipe


def lora_config(cfg):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        modules_to_save=cfg.lora.modules_to_save,
        bias="none",
        task_type="CAUSAL_LM",
    )


@register_recipe("lora", is_adapter=True, default_distributed="ddp",
                 description="frozen base, low-rank adapters on the target modules")
def prepare(model_path: str, cfg, dtype):
    from peft import get_peft_model

    model = load_base(model_path, cfg, dtype)
    model.config.use_cache = False
    return get_peft_model(model, lora_config(cfg))
