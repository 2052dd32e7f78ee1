"""QLoRA: 4-bit (or 8-bit) quantized frozen base via bitsandbytes, LoRA adapters in bf16. Needs CUDA."""

from __future__ import annotations

import importlib.util

from ehrforge.errors import ConfigError
from training.recipes import load_base
from training.recipes.lora import lora_config


def available() -> bool:
    import torch

    return importlib.util.find_spec("bitsandbytes") is not None and torch.cuda.is_available()


def prepare(model_path: str, cfg, dtype):
    import torch

    if not available():
        raise ConfigError("method=qlora needs bitsandbytes and a CUDA GPU (pip install bitsandbytes); "
                          "use method=lora otherwise")
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    q = cfg.qlora
    compute = dtype if dtype != torch.float32 else torch.bfloat16
    bnb = BitsAndBytesConfig(
        load_in_4bit=q.bits == 4,
        load_in_8bit=q.bits == 8,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=compute,
    )
    model = load_base(model_path, cfg, compute, quantization_config=bnb)
    model.config.use_cache = False
    model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=bool(cfg.speed.gradient_checkpointing),
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    return get_peft_model(model, lora_config(cfg))
