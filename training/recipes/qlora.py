"""QLoRA: 4-bit (or 8-bit) quantized frozen base via bitsandbytes, LoRA adapters in bf16.

Runs on CUDA, and on CPU with bitsandbytes >= 0.48 (its CPU backend; slow, but it is the same code path,
which is how the tests exercise it)."""

from __future__ import annotations

import importlib.metadata
import importlib.util

from ehrforge.errors import ConfigError
from training.recipes import load_base, register_recipe
from training.recipes.lora import lora_config

CPU_MIN_VERSION = (0, 48)


def _bnb_version() -> tuple[int, ...] | None:
    if importlib.util.find_spec("bitsandbytes") is None:
        return None
    raw = importlib.metadata.version("bitsandbytes")
    return tuple(int(p) for p in raw.split(".")[:2] if p.isdigit())


def unavailable_reason() -> str | None:
    """Why QLoRA cannot run here, or None when it can."""
    import torch

    version = _bnb_version()
    if version is None:
        return "method=qlora needs bitsandbytes (pip install 'ehrforge[qlora]'); use method=lora otherwise"
    if not torch.cuda.is_available() and version < CPU_MIN_VERSION:
        have = ".".join(map(str, version))
        return (f"method=qlora without a CUDA GPU needs bitsandbytes >= 0.48 (its CPU backend); found {have}. "
                "Upgrade bitsandbytes, run on a GPU, or use method=lora")
    return None


def available() -> bool:
    return unavailable_reason() is None


def quantization_config(cfg, compute_dtype):
    """The bitsandbytes config for the frozen base (also what reloading an adapter onto a 4-bit base needs)."""
    from transformers import BitsAndBytesConfig

    q = cfg.qlora
    return BitsAndBytesConfig(
        load_in_4bit=q.bits == 4,
        load_in_8bit=q.bits == 8,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def keep_trainable_layout(model) -> int:
    """Stop bitsandbytes' CPU backend from repacking 4-bit weights for inference.

    On CPU, bitsandbytes (0.50) converts a Linear4bit's weight to an AVX512-BF16 packed layout the first time
    it runs in eval mode without grad (our periodic eval), and from then on multiplies with `gemv_4bit`, an
    op with no autograd kernel: later training steps get no gradient through the frozen base layers
    (torch only warns "an autograd kernel was not registered"). Turning the conversion off keeps every step
    on the differentiable path. Returns how many layers it touched."""
    from bitsandbytes.nn import Linear4bit

    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    for m in layers:
        m.support_avx512bf16_for_cpu = False
    return len(layers)


@register_recipe("qlora", is_adapter=True, default_distributed="ddp", supports_sharding=False,
                 description="4-bit (or 8-bit) quantized frozen base, LoRA adapters")
def prepare(model_path: str, cfg, dtype):
    import torch

    reason = unavailable_reason()
    if reason:
        raise ConfigError(reason)
    from peft import get_peft_model, prepare_model_for_kbit_training

    compute = dtype if dtype != torch.float32 else torch.bfloat16
    model = load_base(model_path, cfg, compute, quantization_config=quantization_config(cfg, compute))
    keep_trainable_layout(model)
    model.config.use_cache = False
    model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=bool(cfg.speed.gradient_checkpointing),
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    return get_peft_model(model, lora_config(cfg))
