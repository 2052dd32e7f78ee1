"""Training configs: one pydantic model, loaded from YAML with `key=value` overrides, validated before any GPU work.

    cfg = load_train_config("training/configs/demo/tiny_lora.yaml", ["train.max_steps=20", "lora.r=8"])

Files live at `training/configs/<family>/<size>_<method>.yaml` and open with the command that runs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ehrforge.config import config_hash, load_config
from ehrforge.instructions import DEFAULT_SYSTEM_PROMPT
from ehrforge.llemr import LlemrSpec
from ehrforge.models import TINY_PREFIX
from training.recipes import get_recipe


class _Strict(BaseModel):
    # A typo in a YAML key must fail, not be silently ignored.
    model_config = ConfigDict(extra="forbid")


class TinyModelSpec(_Strict):
    """Shape of the model built on the fly when `model.base` is `tiny://` (tests, `make demo`)."""

    vocab_size: int = 2048
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    max_texts: int = 4000


class ModelConfig(_Strict):
    base: str = Field(TINY_PREFIX, description="hub id, local path, tiny:// (built from warehouse text) or "
                      "smollm2-135m-instruct (offline, see ehrforge.models)")
    chat_template: Literal["chatml", "llama3"] | None = Field(
        None, description="named template for base models without one; None uses the tokenizer's own"
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flex_attention"] = "sdpa"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    trust_remote_code: bool = False
    tiny: TinyModelSpec = TinyModelSpec()

    @property
    def is_tiny(self) -> bool:
        return self.base.startswith(TINY_PREFIX)


class DataConfig(_Strict):
    dataset: str = Field("demo", description="instruction set name (synthesis config name)")
    table: str = "synthesis.instructions"
    splits_table: str = "marts.dim_splits"
    export_path: str | None = Field(None, description="parquet/JSONL with `messages` + `split` columns instead of the warehouse")
    tasks: list[str] | None = Field(None, description="only these tasks (None = all)")
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_seq_len: int = Field(2048, ge=16)
    max_train_examples: int | None = Field(None, ge=1)
    max_val_examples: int | None = Field(None, ge=1)
    task_weights: dict[str, float] = Field(
        default_factory=dict,
        description="repeat each train row of a task this many times (2.5 = twice, plus a third copy of a seeded "
        "half of them; 0.5 = a seeded half); val rows are never reweighted. Tasks not named keep weight 1",
    )

    @field_validator("task_weights")
    @classmethod
    def _weights_non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {t: w for t, w in v.items() if not w >= 0}
        if bad:
            raise ValueError(f"data.task_weights must be >= 0, got {bad}")
        return v


class CptConfig(_Strict):
    """Continued pretraining on note text (train-split patients only), run before SFT when stages has `cpt`."""

    notes_table: str = "marts.fct_notes"
    block_size: int = Field(1024, ge=16)
    max_notes: int | None = Field(None, ge=1)
    val_fraction: float = Field(0.05, ge=0.0, lt=0.5)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    learning_rate: float = 5e-5


class LoraSpec(_Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    modules_to_save: list[str] | None = Field(
        None, description="modules trained in full next to the adapter (e.g. [norm] for a random-init tiny model, "
        "whose frozen final norm + LM head cap how confident it can become)"
    )


class QuantSpec(_Strict):
    """QLoRA base-weight quantization (bitsandbytes)."""

    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True


class SpeedConfig(_Strict):
    packing: bool = Field(True, description="pack examples into rows with position_ids resets (no cross-attention)")
    pack_tokens: int = Field(2048, ge=16, description="tokens per packed row")
    packs_per_batch: int = Field(
        8, ge=1, description="packed rows per micro-batch per device. Several short rows beat one long row with "
        "sdpa: its block-diagonal mask still costs attention over the whole row (T^2)"
    )
    group_by_length: bool = Field(True, description="length-grouped batches when packing is off")
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    chunked_loss: bool = Field(True, description="cross-entropy in chunks so the full logits never materialize")
    loss_chunk_tokens: int = Field(4096, ge=64)
    liger: bool | Literal["auto"] = "auto"
    torch_compile: bool = False


class TrainSpec(_Strict):
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    per_device_batch_size: int = Field(8, ge=1, description="examples per micro-batch when packing is off")
    grad_accum: int = Field(1, ge=1)
    seed: int = 0
    logging_steps: int = Field(10, ge=1)
    eval_steps: int | None = Field(50, ge=1, description="None: no periodic eval")
    save_steps: int = Field(50, ge=1)
    save_total_limit: int | None = Field(2, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)
    resume: str = Field("auto", description="auto (last checkpoint in the run dir), never, or a checkpoint path")
    dataloader_num_workers: int = Field(0, ge=0)


class GrpoSpec(_Strict):
    """GRPO (method grpo, stage grpo): group sampling, verifiable rewards, KL to the starting model."""

    num_generations: int = Field(4, ge=2, description="completions sampled per prompt (the group)")
    prompts_per_step: int = Field(2, ge=1, description="prompts per optimizer step (x num_generations completions)")
    max_prompt_tokens: int = Field(768, ge=16, description="longer prompts are dropped and counted, never cut")
    max_completion_tokens: int = Field(128, ge=4)
    temperature: float = Field(1.0, gt=0)
    beta: float = Field(0.04, ge=0, description="KL coefficient (0: no reference model, no KL measured)")
    answer_types: list[Literal["yes_no", "number", "set", "text"]] = ["yes_no", "number", "set"]
    correctness_weight: float = Field(1.0, ge=0, description="weight of the verifier's score in the reward")
    format_weight: float = Field(0.2, ge=0, description="weight of the format reward (reasoning + `Answer:` line)")
    system_prompt: str | None = Field(
        None, description="default: data.system_prompt, the prompt form SFT and evaluation use")


class OutputConfig(_Strict):
    dir: str | None = Field(None, description="default: <runs_dir>/train/<run_id>")
    merge: bool = Field(False, description="merge the adapter into a full model after training")
    record: bool = Field(True, description="write training.runs / training.loss_curve rows")


class TrainConfig(_Strict):
    name: str = "train"
    method: str = Field("lora", description="a registered training recipe (training/recipes): lora, qlora, full, ...")
    stages: list[Literal["cpt", "sft", "grpo"]] = ["sft"]
    distributed: Literal["auto", "ddp", "fsdp", "zero3"] = Field(
        "auto", description="multi-process strategy; auto = the recipe's default (ddp for LoRA/QLoRA, fsdp for full)"
    )
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    cpt: CptConfig = CptConfig()
    lora: LoraSpec = LoraSpec()
    qlora: QuantSpec = QuantSpec()
    grpo: GrpoSpec = GrpoSpec()
    llemr: LlemrSpec = LlemrSpec()  # method llemr: event embeddings (ehrforge.llemr)
    speed: SpeedConfig = SpeedConfig()
    train: TrainSpec = TrainSpec()
    output: OutputConfig = OutputConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> "TrainConfig":
        if not self.stages or len(set(self.stages)) != len(self.stages):
            raise ValueError("stages must be a non-empty list without repeats, e.g. [sft] or [cpt, sft]")
        if self.stages == ["sft", "cpt"]:
            raise ValueError("stages [sft, cpt] is backwards: continued pretraining comes first ([cpt, sft])")
        if self.speed.packing and self.speed.pack_tokens < self.data.max_seq_len:
            raise ValueError(
                f"speed.pack_tokens ({self.speed.pack_tokens}) must be >= data.max_seq_len "
                f"({self.data.max_seq_len}) so that every kept example fits in a packed row"
            )
        if "cpt" in self.stages and self.speed.pack_tokens < self.cpt.block_size and self.speed.packing:
            raise ValueError("speed.pack_tokens must be >= cpt.block_size")
        recipe = get_recipe(self.method)
        if recipe.stage != "sft" and self.stages != [recipe.stage]:
            raise ValueError(f"method {self.method} trains its own stage: set stages=[{recipe.stage}] (to start from "
                             "an SFT model, point model.base at that run's merged model)")
        if self.method == "llemr" and (self.stages != ["sft"] or self.output.merge or self.data.export_path):
            raise ValueError("method llemr trains one stage (stages=[sft]) from the warehouse (no data.export_path) "
                             "and saves one artifact (projector + adapter): output.merge is not supported")
        if recipe.stage == "sft" and "grpo" in self.stages:
            raise ValueError(f"stage grpo needs method=grpo, not {self.method}")
        if recipe.stage != "sft" and self.data.export_path:
            raise ValueError(f"method {self.method} reads its prompts and gold answers from the warehouse; "
                             "data.export_path is for SFT only")
        if not recipe.supports_sharding and self.distributed in ("fsdp", "zero3"):
            raise ValueError(f"{self.method} with fsdp/zero3 is not supported here; use distributed=ddp (or auto)")
        if self.train.early_stopping_patience is not None:
            if self.train.eval_steps is None:
                raise ValueError("train.early_stopping_patience needs train.eval_steps")
            if self.train.save_steps % self.train.eval_steps:
                raise ValueError("early stopping keeps the best checkpoint: train.save_steps must be a multiple of "
                                 "train.eval_steps")
        if self.model.is_tiny and self.model.chat_template not in (None, "chatml"):
            raise ValueError("the tiny:// model ships a chatml template; leave model.chat_template unset")
        return self

    def resolved_distributed(self) -> str:
        if self.distributed != "auto":
            return self.distributed
        return get_recipe(self.method).default_distributed


def load_train_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    return load_config(path, TrainConfig, overrides)


def run_id_for(cfg: TrainConfig) -> str:
    """Same config -> same run id -> same output dir, so rerunning resumes instead of starting over."""
    return f"train-{config_hash(cfg)[:12]}"
